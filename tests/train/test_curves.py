import json

from tla.train.curves import plot_training


def test_training_curves_png_from_the_log(tmp_path):
    rows = [{"step": s, "loss": 5.0 / s, "lr": 1e-3} for s in range(10, 110, 10)]
    rows += [{"split": "val", "step": 50, "val_loss": 0.2, "val_l1_x": 0.5, "val_l1_y": 0.6, "val_l1_rz": 1.0},
             {"split": "val", "step": 100, "val_loss": 0.1, "val_l1_x": 0.4, "val_l1_y": 0.5, "val_l1_rz": 0.9}]
    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = plot_training(tmp_path)
    assert out == tmp_path / "train_curves.png" and out.read_bytes()[:4] == b"\x89PNG"
    assert plot_training(tmp_path / "missing") is None
