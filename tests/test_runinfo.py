"""Run metadata names the host precisely enough to explain bit-different results on 'the same' CPU."""

from pathlib import Path

import torch

from tla.runinfo import describe_hardware, hardware


def test_hardware_records_the_cpu_generation_and_torchs_vector_instructions():
    info = hardware()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    if Path("/proc/cpuinfo").exists() and "cpu family" in Path("/proc/cpuinfo").read_text():
        assert info["cpu_id"].startswith("family ") and " model " in info["cpu_id"]


def test_reports_name_the_generation_and_instructions_and_old_records_still_read():
    new = {"cpu_count": 2, "cpu": "AMD EPYC", "cpu_id": "family 25 model 1", "cpu_capability": "AVX2",
           "platform": "Linux-x"}
    assert describe_hardware(new) == "2 x AMD EPYC (family 25 model 1, AVX2); no GPU (Linux-x)"
    old = {"cpu_count": 2, "cpu": "AMD EPYC", "platform": "Linux-x"}  # written before these fields existed
    assert describe_hardware(old) == "2 x AMD EPYC; no GPU (Linux-x)"
