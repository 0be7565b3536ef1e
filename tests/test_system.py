"""The model runtime is an extra, exactly one of two (issue 17, item 11), and inspect --system says
what is installed and usable."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_each_extra_installs_exactly_one_onnxruntime_and_the_base_none():
    project = _pyproject()["project"]
    runtimes = ("onnxruntime", "onnxruntime-gpu")

    def names(reqs: list[str]) -> set[str]:
        return {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in reqs}

    assert not names(project["dependencies"]) & set(runtimes)
    extras = project["optional-dependencies"]
    assert names(extras["cpu"]) & set(runtimes) == {"onnxruntime"}
    assert names(extras["gpu"]) & set(runtimes) == {"onnxruntime-gpu"}
    assert "vecpipe[cpu]" in extras["test"]


def test_inspect_system_reports_the_runtime_providers_and_cpu(cli):
    res = cli("inspect", "--system", "--format", "json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["kind"] == "system" and info["cpu"]["cores"] >= 1
    assert any(r.startswith("onnxruntime==") for r in info["onnxruntime"]["installed"])
    assert "CPUExecutionProvider" in info["onnxruntime"]["providers"]
    assert info["faiss"]["version"]
    text = cli("inspect", "--system").stdout
    assert "onnxruntime:" in text and "providers:" in text and "flags:" in text


def test_no_runtime_is_one_line_naming_the_extra(tmp_path, tiny_model_dir):
    (tmp_path / "c.jsonl").write_text('{"_id": "a", "text": "hello"}\n')
    code = ("import sys; sys.modules['onnxruntime'] = None; from vecpipe.cli import main; "
            f"main(['embed', {str(tmp_path / 'c.jsonl')!r}, '--model', {str(tiny_model_dir)!r}, '-o', "
            f"{str(tmp_path / 'v.parquet')!r}])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "vecpipe[cpu]" in res.stderr and "vecpipe[gpu]" in res.stderr
    assert not (tmp_path / "v.parquet").exists()


def test_both_runtimes_installed_is_named_with_the_fix(monkeypatch):
    from vecpipe.encode import runtime

    monkeypatch.setattr(runtime, "installed_runtimes", lambda: ["onnxruntime==1.20.0", "onnxruntime-gpu==1.20.0"])
    reason = runtime.cuda_missing_reason()
    assert "both onnxruntime and onnxruntime-gpu" in reason and "pip uninstall -y onnxruntime onnxruntime-gpu" in reason
    monkeypatch.setattr(runtime, "installed_runtimes", lambda: ["onnxruntime==1.20.0"])
    assert "vecpipe[gpu]" in runtime.cuda_missing_reason()
