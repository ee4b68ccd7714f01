"""What goes into the Lambda package and how its zip is written, without building one (no pip)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from service.cli import main
from service.tools.packaging import ARCHITECTURE, PYTHON_VERSION
from service.tools.packaging.archive import ZIP_EPOCH, runtime_files, write_zip, zip_date_time
from service.tools.packaging.sources import SourceError, runtime_sources
from service.tools.provisioning.template import load_template


def test_the_package_holds_the_handlers_import_closure_and_nothing_else() -> None:
    sources = runtime_sources()
    files = set(sources.files)

    for wanted in (
        "lambda_shim/__init__.py",
        "lambda_shim/handler.py",
        "lambda_shim/bootstrap.py",
        "service/__init__.py",
        "service/core/decode.py",
        "service/core/kpl.py",
        "service/runtime/adapters/s3_archive.py",
        "service/runtime/adapters/dead_letter.py",
        "service/runtime/config.py",
        "service/runtime/pipeline.py",
        "service/runtime/composition.py",
        "service/runtime/accounting.py",
        "service/runtime/ports.py",
    ):
        assert wanted in files
    for name in files:
        assert name.startswith(("lambda_shim/", "service/__init__.py", "service/core/", "service/runtime/"))
        assert not name.startswith(("service/tools/", "service/cli/", "service/runtime/consumer/"))
        assert name != "service/runtime/adapters/kinesis_writer.py"
    assert sources.third_party == {"boto3", "botocore", "msgspec", "pydantic", "pydantic_settings"}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_closure_follows_deferred_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "lambda_shim/__init__.py": "",
            "lambda_shim/handler.py": (
                "from typing import TYPE_CHECKING\n"
                "import yaml\n"
                "from service.core import thing\n"
                "if TYPE_CHECKING:\n"
                "    from service.typing_only import T\n"
                "def run():\n"
                "    from service.deferred import go\n"
            ),
            "service/__init__.py": "",
            "service/core/__init__.py": "thing = 1\n",
            "service/deferred.py": "from . import sibling\n",
            "service/sibling.py": "import json\n",
            "service/typing_only.py": "",
            "service/unused.py": "",
        },
    )

    sources = runtime_sources(root)

    assert sources.files == (
        "lambda_shim/__init__.py",
        "lambda_shim/handler.py",
        "service/__init__.py",
        "service/core/__init__.py",
        "service/deferred.py",
        "service/sibling.py",
    )
    assert sources.third_party == {"yaml"}


def test_a_first_party_import_without_a_file_is_an_error(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path, {"lambda_shim/__init__.py": "import service.gone\n", "service/__init__.py": ""}
    )

    with pytest.raises(SourceError, match=r"service\.gone"):
        runtime_sources(root)


def test_install_bookkeeping_caches_stubs_and_scripts_stay_out(tmp_path: Path) -> None:
    site = write_tree(
        tmp_path,
        {
            "bin/dotenv": "#!/build/machine/python\n",
            "pkg/__init__.py": "",
            "pkg/__init__.pyi": "",
            "pkg/py.typed": "",
            "pkg/_native.so": "",
            "pkg/__pycache__/__init__.cpython-312.pyc": "",
            "pkg/tests/test_pkg.py": "",
            "pkg-1.0.dist-info/METADATA": "",
            "pkg-1.0.dist-info/RECORD": "",
            "pkg-1.0.dist-info/INSTALLER": "",
            "pkg-1.0.dist-info/licenses/LICENSE": "",
        },
    )

    assert sorted(name for name, _ in runtime_files(site)) == [
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/licenses/LICENSE",
        "pkg/__init__.py",
        "pkg/_native.so",
    ]


def test_the_zip_is_the_same_bytes_whatever_the_order_mtimes_and_modes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        write_tree(root, {"b.py": "B = 2\n", "pkg/a.py": "A = 1\n"})
    (second / "b.py").chmod(0o755)
    (second / "pkg" / "a.py").touch()

    write_zip(tmp_path / "1.zip", [("b.py", first / "b.py"), ("pkg/a.py", first / "pkg/a.py")], ZIP_EPOCH)
    write_zip(tmp_path / "2.zip", [("pkg/a.py", second / "pkg/a.py"), ("b.py", second / "b.py")], ZIP_EPOCH)

    assert (tmp_path / "1.zip").read_bytes() == (tmp_path / "2.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "1.zip") as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == ["b.py", "pkg/a.py"]
    assert {info.date_time for info in infos} == {ZIP_EPOCH}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (None, (1980, 1, 1, 0, 0, 0)),
        ("", (1980, 1, 1, 0, 0, 0)),
        ("0", (1980, 1, 1, 0, 0, 0)),
        ("1767225600", (2026, 1, 1, 0, 0, 0)),
    ],
)
def test_source_date_epoch_sets_every_timestamp(epoch: str | None, expected: tuple[int, ...]) -> None:
    assert zip_date_time(epoch) == expected


def test_a_malformed_source_date_epoch_is_named() -> None:
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH"):
        zip_date_time("yesterday")


def test_the_default_target_is_the_templates_function() -> None:
    template = load_template()
    functions = [
        spec["Properties"]
        for spec in template["Resources"].values()
        if spec["Type"] == "AWS::Lambda::Function"
    ]
    assert len(functions) == 2  # the processor and the archive function: one package for both
    for function in functions:
        assert function["Runtime"] == f"python{PYTHON_VERSION}"
        assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == ARCHITECTURE.value


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--python-version", "2.7"], "--python-version"),
        (["--python-version", "3.10"], "--python-version"),
        (["--python-version", "python3.12"], "--python-version"),
        (["--architecture", "sparc"], "--architecture"),
    ],
)
def test_bad_flags_are_usage_errors_that_name_the_flag(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["package-lambda", *argv]) == 2
    assert named in capsys.readouterr().err


def test_an_out_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["package-lambda", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a directory" in capsys.readouterr().err
