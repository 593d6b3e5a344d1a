"""Using a trained model: batched prediction with test-time augmentation (``predict``) and evaluation of a
split with PQ (``evaluate``). Nothing here is read by training, so changing it never retrains a row."""
