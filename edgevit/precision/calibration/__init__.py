"""Calibration for the INT8 and FP8 graphs: data sources, methods and the amax cache.

    from edgevit.precision.calibration import CalibrationConfig, calibrate, load_calibration_data

    data = load_calibration_data("digits", preprocessing, (1, 8, 8))       # train split, 512 images
    calib = calibrate("out/model.onnx", data, CalibrationConfig("percentile", 99.99),
                      cache="out/calibration.json")                           # reused while valid
    calib.amax                                                                # {tensor: amax}
"""

from .calibrate import METHODS, Calibration, CalibrationConfig, calibrate, read_cache, write_cache
from .data import DEFAULT_BATCH, DEFAULT_SAMPLES, CalibrationData, calibration_data_key, load_calibration_data

__all__ = [
    "DEFAULT_BATCH", "DEFAULT_SAMPLES", "METHODS", "Calibration", "CalibrationConfig", "CalibrationData",
    "calibrate", "calibration_data_key", "load_calibration_data", "read_cache", "write_cache",
]
