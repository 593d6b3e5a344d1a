"""data_prep: params.yaml -> prepared datasets + data/03_primary/datasets.json; and the tiny profile's
pretrained backbones (the ImageNet stand-in), one namespace per ``pretrain_backbones`` entry."""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from spatialflow_repro.pipelines.data_prep.nodes import prepare_datasets, pretrain_backbone


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([node(prepare_datasets, inputs="parameters", outputs="datasets_manifest", name="prepare_datasets")])


def create_pretrain_pipeline(names: list[str]) -> Pipeline:
    """``pretrain_backbone`` per entry, namespaced by its name: writes ``<name>.pretrained_backbone``."""
    return sum(
        (Pipeline([node(update_wrapper(partial(pretrain_backbone, name), pretrain_backbone), inputs="parameters",
                        outputs="pretrained_backbone", name="pretrain_backbone")],
                  namespace=name, parameters={"parameters"})
         for name in names),
        Pipeline([]),
    )
