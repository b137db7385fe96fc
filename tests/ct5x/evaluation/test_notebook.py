"""notebooks/report.ipynb runs headless (nbclient, this interpreter's kernel) on a report of
synthetic runs; any cell error fails the test."""

import pathlib
import sys

import nbformat
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[3] / "notebooks" / "report.ipynb"


def outputs_of(notebook, kind):
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if kind in output.get("data", {})]


def test_report_notebook_runs_on_synthetic_report(synthetic_report, tmp_path, monkeypatch):
    _, report, folder = synthetic_report
    monkeypatch.setenv("CT5X_REPORT_DIR", str(folder))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not outputs_of(notebook, "text/plain"), "commit the notebook without outputs"
    client = NotebookClient(notebook, timeout=180, kernel_name=NATIVE_KERNEL_NAME,
                            resources={"metadata": {"path": str(tmp_path)}})
    # The native kernel is this interpreter (the project's environment), whatever is on PATH.
    client.km_kwargs = {"kernel_cmd": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                       "{connection_file}"]}
    client.execute()
    markdown = "\n".join(o["data"]["text/markdown"] for o in outputs_of(notebook, "text/markdown"))
    assert markdown.count("| Model | Prompt | Metric |") == len(report["tables"])
    assert len(outputs_of(notebook, "image/png")) == len(list((folder / "plots").glob("*.png")))
    html = "\n".join(o["data"]["text/html"] for o in outputs_of(notebook, "text/html"))
    assert "86.03" in html  # FLAN-T5's published MedNLI accuracy, beside the measured one
