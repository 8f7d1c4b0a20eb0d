"""The test-set report of a trained checkpoint: error, activation and single-core speed."""
from typing import Any, Dict, Optional

from condnn import checkpoint, datasets
from condnn.evaluation import evaluate
from condnn.inference_timing import (measure_checkpoint_speed, measure_speed, stored_dtype,
                                     threadpoolctl_available, with_fastest_blas)
from condnn.models.inference import for_inference


def checkpoint_report(path: str, *, data: Optional[str] = None, mode: Optional[str] = None,
                      timing: bool = True, batch1_examples: Optional[int] = None,
                      repeats: int = 3, data_set: Optional[datasets.DataSet] = None,
                      storage=None) -> Dict[str, Any]:
    """Evaluates a checkpoint of :func:`condnn.train.train` on its data set's test examples.

    Args:
        path: the checkpoint.
        data: the data set spec (default: the one the run trained on).
        mode: the policies' evaluation mode (default: the model's, "threshold" unless the
            run chose otherwise).
        timing: also time the sparse and dense executions on one core
            (:mod:`condnn.inference_timing`; where the environment forces an OpenBLAS core
            type, the faster of the times with it and without it).
        batch1_examples: test examples timed at batch 1 (None: all).
        repeats: timed passes at batch 256.
        data_set: the loaded data set, to skip loading it again.
        storage: None, or np.float16 to evaluate and time the model's frozen copy with
            its block-sparse layers' weights stored in half precision
            (:func:`condnn.models.for_inference`): the test error is then that copy's.

    Returns:
        A JSON-ready dict: ``test_error``, ``test_loss``, ``mean_activation`` (the fraction
        of all gated blocks on), ``activation_per_layer``, ``flops_fraction``, the model's
        class, the mode, ``weight_storage`` (the dtype the evaluated weights are stored
        in), and with timing every field of
        :meth:`condnn.inference_timing.SpeedReport.to_dict` (``time_sparse_s``,
        ``time_dense_s``, ``speedup`` at batch 256, ``speedup_batch1``, ...).
    """
    loaded = checkpoint.load(path)
    spec = data or loaded.metadata.get("data", "mnist")
    data_set = data_set if data_set is not None else datasets.load(spec)
    model = loaded.model
    if mode is not None and hasattr(model, "set_mode"):
        model.set_mode(mode)
    evaluated = model if storage is None else for_inference(model, storage)
    result = evaluate(evaluated, data_set.x_test, data_set.y_test, mode=mode)
    report: Dict[str, Any] = {
        "checkpoint": path, "model": type(model).__name__, "data": spec,
        "mode": getattr(model, "mode", None), "epoch": loaded.epoch,
        "test_error": result.error, "test_loss": result.loss,
        "mean_activation": result.mean_activation,
        "activation_per_layer": result.activation, "flops_fraction": result.flops_fraction,
        "test_examples": result.examples, "weight_storage": stored_dtype(evaluated)}
    if timing:
        options = dict(batch1_examples=batch1_examples, repeats=repeats, mode=mode,
                       storage=storage)
        if threadpoolctl_available():
            speed = with_fastest_blas(measure_speed(model, data_set.x_test, **options),
                                      path, spec, **options)
        else:   # the BLAS threads can only be set before it loads: time in a subprocess
            speed = measure_checkpoint_speed(path, spec, in_process=False, **options)
        report.update(speed.to_dict())
    return report
