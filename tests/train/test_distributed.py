"""`accelerate launch` with 2 CPU processes (DDP over gloo) trains a few steps of the tiny TLA, with each
config shipped in configs/accelerate (the paper's 8-GPU one run as 2 CPU processes)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from tla.policies.tla import TLAPolicy
    from tla.train.config import TrainConfig
    from tla.train.synthetic import SyntheticTactile
    from tla.train.trainer import train
    small = ["composite_size=112", "model.tiny.vision_depth=1", "model.tiny.text_layers=1"]
    policy = TLAPolicy.build("tiny", small)
    cfg = TrainConfig(max_steps=3, batch_size=4, grad_accum=2, val_fraction=0.25, val_every=3,
                      val_max_samples=2, log_every=1, num_workers=0)
    ds = SyntheticTactile(16, size=(24, 32))
    s = train(policy, ds, cfg, sys.argv[1], {"policy": "tla", "preset": "tiny"})
    # one write per process: print() writes its pieces separately, and the two ranks share the pipe
    sys.stdout.write(f"WORLD {torch.distributed.get_world_size()} STEP {s['step']}\\n")
    sys.stdout.flush()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIGS = {  # every config shipped, with the launch options that fit it to this CPU box
    "cpu_ddp2.yaml": [],
    "paper_ddp.yaml": ["--num_processes", "2", "--mixed_precision", "no"],
}


def test_every_shipped_accelerate_config_is_tested():
    assert sorted(p.name for p in (ROOT / "configs/accelerate").glob("*.yaml")) == sorted(CONFIGS)


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_accelerate_launch_two_cpu_processes(tmp_path, config):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(accelerate),
        "launch",
        "--config_file",
        str(ROOT / "configs/accelerate" / config),
        *CONFIGS[config],
        "--main_process_port",
        str(_free_port()),
        str(script),
        str(tmp_path / "run"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("WORLD 2 STEP 3") == 2
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["num_processes"] == 2
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log if "loss" in x] == [1, 2, 3]
    assert any(x.get("split") == "val" for x in log)
    assert (tmp_path / "run" / "policy" / "policy.json").exists()
    # the main process alone writes the tracker files; every process took part in the best checkpoint
    assert len(list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))) == 1
    assert json.loads((tmp_path / "run" / "checkpoints" / "best" / "best.json").read_text())["step"] == 3
