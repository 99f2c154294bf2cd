"""What installing CARMA puts on a machine: one import package, `carma`, and a public surface
that is exactly `carma.__all__`."""

import email
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import carma

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            str(ROOT),
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=out,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("carma-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"carma", f"carma-{carma.__version__}.dist-info"}
    for layer in ("domain", "projections", "healing"):  # the layers, inside the package
        assert f"carma/{layer}/__init__.py" in names
    assert "carma/py.typed" in names


def test_the_wheel_pins_no_torch_and_asks_for_postgres_only_as_an_extra(wheel):
    archive = zipfile.ZipFile(wheel)
    (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = email.message_from_bytes(archive.read(meta))
    assert metadata["Requires-Python"] == ">=3.11"
    requires = metadata.get_all("Requires-Dist")
    assert not [r for r in requires if r.lower().startswith("torch")]
    assert (
        [r for r in requires if r.startswith("psycopg")]
        == [r for r in requires if r.startswith("psycopg") and 'extra == "postgres"' in r]
        != []
    )


def test_the_server_is_an_extra_and_its_pages_are_in_the_wheel(wheel):
    archive = zipfile.ZipFile(wheel)
    (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    requires = email.message_from_bytes(archive.read(meta)).get_all("Requires-Dist")
    for name in ("fastapi", "uvicorn", "prometheus-client"):
        found = [r for r in requires if r.startswith(name)]
        assert found and all('extra == "server"' in r for r in found), name
    names = set(archive.namelist())
    for page in ("index.html", "dashboard.js", "dashboard.css", "docs.html", "docs.js"):
        assert f"carma/server/static/{page}" in names


def test_the_wheel_ships_a_calibration_of_the_default_model_and_method(wheel):
    """Small namespaces read their expected recall off it (docs/reconstruction.md): without
    it, every reconstruction there says "share of words unknown" (CI found it missing)."""
    from carma.bootstrap import AUTOMATIC, SHIPPED_CALIBRATION
    from carma.embedding import DEFAULT_MODEL

    archive = zipfile.ZipFile(wheel)
    shipped = json.loads(archive.read(f"carma/{SHIPPED_CALIBRATION}"))
    (entry,) = [
        c
        for c in shipped["calibrations"]
        if c["model"] == DEFAULT_MODEL and c["method"] == AUTOMATIC
    ]
    summary = entry["summary"]
    assert summary["source"] == "shipped public corpus" and summary["fragments"] >= 20
    fidelities = [f for f, _ in entry["curve"]]
    recalls = [r for _, r in entry["curve"]]
    assert fidelities == sorted(fidelities) and recalls == sorted(recalls)  # isotonic
    assert all(0 <= r <= 1 for r in recalls)


def test_the_installed_wheel_runs_from_its_own_files(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    code = (
        "import sys, carma, carma.domain, carma.cli\n"
        "from carma.embedding import HashingEmbedder\n"
        "with carma.open(sys.argv[1], embedder=HashingEmbedder()) as mem:\n"
        "    key = mem.add('installed from a wheel')\n"
        "    assert mem.get(key).text == 'installed from a wheel'\n"
        "print(carma.__file__, carma.domain.__file__, 'domain' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    ran = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "home")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    package, domain, bare_domain = ran.stdout.split()
    assert package.startswith(str(target)) and domain.startswith(str(target))
    assert bare_domain == "False"


def test_the_public_surface_is_all():
    public = {name for name in dir(carma) if not name.startswith("_")}
    # Submodules appear as attributes once imported; they are reached by their own names.
    modules = {name for name in public if type(getattr(carma, name)).__name__ == "module"}
    assert public - modules == set(carma.__all__) - {"__version__"}
    assert all(hasattr(carma, name) for name in carma.__all__)


def test_the_integrations_are_extras_the_core_install_does_not_pull(wheel):
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    for module in ("integrations/langchain.py", "integrations/mcp.py", "testing/plugin.py"):
        assert f"carma/{module}" in names
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = email.message_from_bytes(archive.read(meta)).get_all("Requires-Dist")
    for package, extra in [
        ("langchain-core", "langchain"),
        ("mcp", "mcp"),
        ("hypothesis", "testing"),
        ("pytest", "testing"),
    ]:
        pinned = [r for r in requires if r.split(">")[0].split("<")[0].split("=")[0] == package]
        assert pinned and all("extra ==" in r for r in pinned), (package, pinned)
        assert any(f'extra == "{extra}"' in r for r in pinned), (package, extra)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "[pytest11]\ncarma = carma.testing.plugin" in archive.read(entry_points).decode()


def test_importing_carma_and_its_cli_loads_no_integration():
    probe = (
        "import sys, carma, carma.cli; "
        "print(sorted(m for m in ('langchain_core', 'mcp', 'hypothesis') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
