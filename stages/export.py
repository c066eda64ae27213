"""Stage ``export`` (optional): ONNX and int8 ONNX files of the final model, and what int8 costs.

With ``export: true`` in params.yaml: reads the final checkpoint, the training list (int8
calibration crops) and the test list; writes into the output folder ``model.onnx`` (fp32, angles
in degrees out) and ``model_int8.onnx`` (static QDQ int8), and the metrics (file sizes,
PyTorch/ONNX parity, MAE of PyTorch fp32, ONNX fp32 and ONNX int8 on the test list). With
``export: false`` it only writes ``SKIPPED.txt`` in the output folder and a metrics file saying so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from headpose.crops.protocols import protocol_from_params
from headpose.datasets.registry import read_samples
from headpose.deploy.export import export_for_deployment
from headpose.errors import exit_on_error
from headpose.io.files import atomic_directory, write_json
from headpose.params import load_params
from headpose.registry import load_plugins


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params.yaml")
    parser.add_argument("--checkpoint", required=True, help="the model to export")
    parser.add_argument("--calibration-list", required=True, help="training list (int8 ranges)")
    parser.add_argument("--test-list", required=True, help="test sample list")
    parser.add_argument("--out", required=True, help="output folder of the ONNX files")
    parser.add_argument("--metrics", required=True, help="metrics JSON")
    return parser.parse_args(argv)


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    params = load_params(args.params)
    load_plugins(params.plugins)  # before anything is looked up
    if not params.export:
        with atomic_directory(args.out) as temp:
            (temp / "SKIPPED.txt").write_text("export: false in params.yaml\n", encoding="utf-8")
        write_json(args.metrics, {"exported": False})
        print("export skipped (export: false in params.yaml)")
        return
    metrics = export_for_deployment(
        args.checkpoint,
        args.out,
        read_samples(args.calibration_list),
        read_samples(args.test_list),
        workers=params.workers,
        seed=params.seed,
        crop_protocol=protocol_from_params(params.crop_protocol),
    )
    write_json(args.metrics, metrics)
    mae, sizes = metrics["mae"], metrics["file_mb"]
    print(
        f"wrote {Path(args.out) / 'model.onnx'} ({sizes['model.onnx']} MB) and "
        f"model_int8.onnx ({sizes['model_int8.onnx']} MB); mean MAE on {args.test_list}: "
        f"PyTorch {mae['pytorch_fp32']['mean']}, ONNX fp32 {mae['onnx_fp32']['mean']}, "
        f"int8 {mae['onnx_int8']['mean']} deg; parity {metrics['parity_max_abs_deg']} deg"
    )


if __name__ == "__main__":
    main()
