"""Stage ``export`` (optional): ONNX and int8 ONNX files of the final model, and what int8 costs.

With ``export: true`` in params.yaml: reads ``models/model.pt``, the training list
``data/300W_AUG/train.txt`` (int8 calibration crops) and the test list
``data/filelists/test.txt``; writes ``deploy/model.onnx`` (fp32, angles in degrees out),
``deploy/model_int8.onnx`` (static QDQ int8) and ``metrics/export.json`` (file sizes,
PyTorch/ONNX parity, MAE of PyTorch fp32, ONNX fp32 and ONNX int8 on the test list).
With ``export: false`` it only writes ``deploy/SKIPPED.txt`` and a metrics file saying so.
"""

from __future__ import annotations

from headpose.deploy.export import export_for_deployment
from headpose.errors import exit_on_error
from headpose.io.files import atomic_directory, write_json
from headpose.io.formats import read_list
from headpose.params import load_params

CHECKPOINT = "models/model.pt"
OUT_DIR = "deploy"
CALIBRATION_LIST = "data/300W_AUG/train.txt"
TEST_LIST = "data/filelists/test.txt"
METRICS_FILE = "metrics/export.json"


@exit_on_error
def main() -> None:
    params = load_params()
    if not params["export"]:
        with atomic_directory(OUT_DIR) as temp:
            (temp / "SKIPPED.txt").write_text("export: false in params.yaml\n", encoding="utf-8")
        write_json(METRICS_FILE, {"exported": False})
        print("export skipped (export: false in params.yaml)")
        return
    metrics = export_for_deployment(
        CHECKPOINT,
        OUT_DIR,
        read_list(CALIBRATION_LIST),
        read_list(TEST_LIST),
        workers=params["workers"],
        seed=params["seed"],
    )
    write_json(METRICS_FILE, metrics)
    mae = metrics["mae"]
    print(
        f"wrote {OUT_DIR}/model.onnx ({metrics['file_mb']['model.onnx']} MB) and "
        f"model_int8.onnx ({metrics['file_mb']['model_int8.onnx']} MB); mean MAE on {TEST_LIST}: "
        f"PyTorch {mae['pytorch_fp32']['mean']}, ONNX fp32 {mae['onnx_fp32']['mean']}, "
        f"int8 {mae['onnx_int8']['mean']} deg; parity {metrics['parity_max_abs_deg']} deg"
    )


if __name__ == "__main__":
    main()
