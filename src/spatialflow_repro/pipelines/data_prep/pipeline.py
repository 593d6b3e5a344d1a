"""data_prep: params.yaml -> prepared datasets + data/03_primary/datasets.json."""

from kedro.pipeline import Pipeline, node

from spatialflow_repro.pipelines.data_prep.nodes import prepare_datasets


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([node(prepare_datasets, inputs="parameters", outputs="datasets_manifest", name="prepare_datasets")])
