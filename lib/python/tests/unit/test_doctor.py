"""``vmtest doctor`` and the run/build preflight, against a fake PATH of stub executables."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmtest.errors import ImageBuildError
from vmtest.portable import doctor
from vmtest.portable.accel import Accelerator
from vmtest.portable.cli import main
from vmtest.portable.image.builder import image_directory
from vmtest.portable.image.recipe import SUITES, load_recipe

RECIPES = Path(__file__).parents[1] / "recipes"
ALL_COMMANDS = tuple(tool.command for tool in doctor.TOOLS)
MakePath = Callable[..., str]


@pytest.fixture
def make_path(tmp_path: Path) -> MakePath:
    """A PATH of stubs for every command in ``doctor.TOOLS`` except ``without``."""
    def make(*without: str) -> str:
        directory = tmp_path / f"bin{len(list(tmp_path.glob('bin*')))}"  # a name that names no command
        directory.mkdir()
        for command in ALL_COMMANDS:
            if command not in without:
                stub = directory / command
                stub.write_text(f"#!/bin/sh\necho '{command} version 7.2.0 (stub)'\n")
                stub.chmod(0o755)
        return str(directory)
    return make


def binfmt(directory: Path, entries: dict[str, str]) -> Path:
    """A fake binfmt_misc mount holding ``entries`` (name -> first line of its state)."""
    directory.mkdir()
    (directory / "status").write_text("enabled\n")
    for name, state in entries.items():
        (directory / name).write_text(f"{state}\ninterpreter /usr/libexec/qemu-binfmt/{name}-binfmt-P\nflags: PF\n")
    return directory


def file_mirror(root: Path) -> str:
    """A file:// "mirror" with a Release file for every suite."""
    for suite in SUITES:
        (root / "dists" / suite).mkdir(parents=True)
        (root / "dists" / suite / "Release").write_text(f"Suite: {suite}\n")
    return f"file://{root}"


@pytest.fixture
def cli_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's host made deterministic: x86_64, an enabled qemu-aarch64, a temp cache, a file mirror, TCG."""
    monkeypatch.setattr(doctor, "HOST_MACHINE", "x86_64")
    monkeypatch.setattr(doctor, "STANDARD_PATH", "")  # this host's own /usr/bin must not answer for the stubs
    monkeypatch.setattr(doctor, "BINFMT_DIR", binfmt(tmp_path / "binfmt", {"qemu-aarch64": "enabled"}))
    cache = tmp_path / "cache"
    monkeypatch.setenv("VMTEST_CACHE", str(cache))
    monkeypatch.setenv("VMTEST_DEBIAN_MIRROR", file_mirror(tmp_path / "mirror"))
    monkeypatch.setenv("VMTEST_ACCEL", "tcg")  # never the KVM probe in unit tests
    return cache


def fake_host(tmp_path: Path, path: str, machine: str = "x86_64") -> doctor.Host:
    return doctor.Host(path, machine, binfmt(tmp_path / "fake-binfmt", {"qemu-aarch64": "enabled"}),
                       tmp_path / "fake-cache")


def lines_of(output: str, name: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(rf"\S+\s+{re.escape(name)}:", line)]


def test_missing_arch_test_fails_with_its_fix(make_path: MakePath, cli_host: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", make_path("arch-test"))
    assert main(["doctor"]) == 1
    output = capsys.readouterr().out
    [line] = lines_of(output, "arch-test")
    assert line.startswith("FAIL  arch-test: not found on PATH") and "(fix: apt-get install arch-test)" in line
    assert "1 required check(s) failed: arch-test" in output


def test_everything_present_passes(make_path: MakePath, cli_host: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", make_path())
    assert main(["doctor"]) == 0
    output = capsys.readouterr().out
    checks = output.splitlines()[:-1]
    assert checks and all(line.startswith("ok ") for line in checks), output
    for qemu in ("qemu-system-x86_64", "qemu-system-aarch64", "qemu-img"):
        [line] = lines_of(output, qemu)
        assert line.startswith(f"ok    {qemu}: {qemu} version 7.2.0 (stub) (") and line.endswith(f"/{qemu})")
    assert "dists/trixie/Release answers" in output and "accelerator (x86_64): tcg" in output
    assert output.splitlines()[-1] == "vmtest doctor: every required check passed (0 warning(s))"


def test_warnings_do_not_fail(make_path: MakePath, cli_host: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", make_path("socat", "cpio"))
    assert main(["doctor", "--offline"]) == 0
    output = capsys.readouterr().out
    assert lines_of(output, "socat")[0].startswith("warn  socat:") and "(fix: apt-get install socat)" in output
    assert "Debian mirror" not in output  # --offline
    assert output.splitlines()[-1] == "vmtest doctor: every required check passed (2 warning(s))"


def test_x86_64_alone_needs_no_arm64_tools(make_path: MakePath, cli_host: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    arm64_only = ("arch-test", "qemu-aarch64-static", "qemu-system-aarch64", "update-binfmts", "systemctl")
    monkeypatch.setenv("PATH", make_path(*arm64_only))
    monkeypatch.setattr(doctor, "BINFMT_DIR", tmp_path / "not-mounted")
    assert main(["doctor", "--offline", "--arch", "x86_64"]) == 0
    output = capsys.readouterr().out
    assert not any(command in output for command in [*arm64_only, "binfmt_misc", "aarch64"]), output
    # Negative control: the same host cannot build or boot arm64 machines.
    assert main(["doctor", "--offline", "--arch", "aarch64"]) == 1
    output = capsys.readouterr().out
    for command in arm64_only:
        assert lines_of(output, command)[0].startswith("FAIL"), command
    assert "FAIL  binfmt_misc qemu-aarch64: binfmt_misc is not mounted" in output
    assert "qemu-system-x86_64" not in output


def test_qemu_that_does_not_answer_version_fails(tmp_path: Path, make_path: MakePath) -> None:
    path = make_path()
    (Path(path) / "qemu-system-x86_64").write_text("#!/bin/sh\necho 'error while loading shared libraries' >&2\n"
                                                   "exit 127\n")
    results = {result.name: result for result in doctor.run_checks(fake_host(tmp_path, path), ["x86_64"],
                                                                    offline=True, select=tcg)}
    broken = results["qemu-system-x86_64"]
    assert broken.status == "FAIL" and "exited with 127: error while loading shared libraries" in broken.detail
    assert broken.fix == "apt-get install qemu-system-x86"
    assert results["qemu-img"].ok


def test_a_command_installed_off_path_is_a_path_problem(tmp_path: Path, make_path: MakePath) -> None:
    sbin = Path(make_path())
    host = doctor.Host(make_path("mke2fs"), "x86_64", tmp_path, tmp_path, standard_path=str(sbin))
    [mke2fs] = [result for result in doctor.tool_checks(host, ["x86_64"], "build") if result.name == "mke2fs"]
    assert mke2fs.status == "FAIL" and mke2fs.detail == f"installed as {sbin}/mke2fs, but {sbin} is not on PATH"
    assert mke2fs.fix == f"add {sbin} to PATH"


def tcg(arch: str) -> Accelerator:
    return Accelerator("tcg", "stubbed", arch)


def test_binfmt_check_fails_unless_the_entry_is_enabled(tmp_path: Path) -> None:
    fix = "apt-get install qemu-user-static binfmt-support && update-binfmts --enable qemu-aarch64"

    def check(entries: dict[str, str] | None) -> doctor.CheckResult:
        directory = tmp_path / f"binfmt-{len(list(tmp_path.iterdir()))}"
        if entries is None:
            directory.mkdir()
        else:
            binfmt(directory, entries)
        return doctor.check_binfmt("aarch64", doctor.Host("", "x86_64", directory, tmp_path))

    enabled = check({"qemu-aarch64": "enabled"})
    assert enabled.ok and "aarch64-binfmt-P" in enabled.detail
    missing = check({"qemu-arm": "enabled"})
    assert missing.status == "FAIL" and missing.fix == fix
    disabled = check({"qemu-aarch64": "disabled"})
    assert disabled.status == "FAIL" and disabled.fix == "update-binfmts --enable qemu-aarch64"
    unmounted = check(None)
    assert unmounted.status == "FAIL" and unmounted.fix.startswith("mount -t binfmt_misc") and fix in unmounted.fix


def test_accelerator_is_information_unless_vmtest_accel_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    informational = doctor.check_accelerator("x86_64", tcg)
    assert informational.status == "ok" and informational.detail == "tcg: stubbed"
    monkeypatch.setenv("VMTEST_ACCEL", "fast")
    invalid = doctor.check_accelerator("x86_64")  # the real select_accelerator: it refuses before any probe
    assert invalid.status == "FAIL" and "VMTEST_ACCEL must be" in invalid.detail


def test_cache_check_needs_a_creatable_directory_and_free_space(tmp_path: Path) -> None:
    def host(cache: Path) -> doctor.Host:
        return doctor.Host("", "x86_64", tmp_path, cache)

    creatable = doctor.check_cache(host(tmp_path / "new" / "cache"), min_free_bytes=1)
    assert creatable.ok and "will be created" in creatable.detail and "GiB free" in creatable.detail
    (tmp_path / "a-file").write_text("")
    blocked = doctor.check_cache(host(tmp_path / "a-file" / "cache"))
    assert blocked.status == "FAIL" and "cannot be created" in blocked.detail
    a_file = doctor.check_cache(host(tmp_path / "a-file"))
    assert a_file.status == "FAIL" and a_file.detail.endswith("a-file is not a directory")
    full = doctor.check_cache(host(tmp_path), min_free_bytes=1 << 62)
    assert full.status == "FAIL" and re.search(r"only [0-9.]+ GiB free \(needs \d+\)", full.detail)


@pytest.fixture
def http_mirror(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server with ``dists/bookworm/Release`` only."""
    (tmp_path / "www" / "dists" / "bookworm").mkdir(parents=True)
    (tmp_path / "www" / "dists" / "bookworm" / "Release").write_text("Suite: bookworm\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path / "www"), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_mirror_check_needs_the_suites_release(http_mirror: str) -> None:
    assert doctor.check_mirror("bookworm", lambda: http_mirror).ok
    absent = doctor.check_mirror("trixie", lambda: http_mirror + "/")
    assert absent.status == "FAIL" and "HTTP 404" in absent.detail and "VMTEST_DEBIAN_MIRROR" in absent.fix
    closed = doctor.check_mirror("bookworm", lambda: "http://127.0.0.1:9/debian", timeout=2)
    assert closed.status == "FAIL" and "is unreachable" in closed.detail

    def no_mirror() -> str:
        raise ImageBuildError("no Debian mirror found in the host's apt sources")

    assert "no Debian mirror found" in doctor.check_mirror("bookworm", no_mirror).detail


def test_fix_hints_come_from_the_one_table() -> None:
    hint = doctor.install_hint("qemu-aarch64-static", "update-binfmts")
    assert hint == "apt-get install qemu-user-static binfmt-support"


def test_build_preflight_names_arch_test_before_building(make_path: MakePath, cli_host: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", make_path("arch-test"))
    assert main(["build", str(RECIPES / "minimal-arm64.toml")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert [line for line in errors if "arch-test" in line] == [
        "vmtest: missing for aarch64 images: arch-test (apt-get install arch-test)"
    ]
    assert not cli_host.exists(), "the preflight must stop before anything is built or cached"


def test_build_preflight_passes_with_everything_present(make_path: MakePath, cli_host: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The negative control of the test above, short of building: nothing is missing.
    monkeypatch.setenv("PATH", make_path())
    assert doctor.preflight([load_recipe(RECIPES / "minimal-arm64.toml")], booting=False) == []
    assert not cli_host.exists()


def test_run_preflight_needs_qemu_even_for_cached_images(make_path: MakePath, cli_host: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    recipe = load_recipe(RECIPES / "minimal-arm64.toml")
    # Cached: the build tools (all missing from this PATH) and the mirror are not looked at.
    (image_directory(recipe, cli_host)).mkdir(parents=True)
    (image_directory(recipe, cli_host) / "image.json").write_text("{}")
    monkeypatch.setenv("VMTEST_DEBIAN_MIRROR", "http://127.0.0.1:9/unreachable")
    build_tools = [tool.command for tool in doctor.TOOLS if tool.stage == "build"]
    monkeypatch.setenv("PATH", make_path(*build_tools))
    assert doctor.preflight([recipe], booting=False) == []
    assert doctor.preflight([recipe], booting=True) == []
    monkeypatch.setenv("PATH", make_path(*build_tools, "qemu-system-aarch64"))
    script = tmp_path / "test.py"
    script.write_text("start_all()\n")
    assert main(["run", str(script), "--machines", str(RECIPES / "minimal-arm64.toml"),
                 "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "vmtest: missing for aarch64 machines: qemu-system-aarch64 (apt-get install qemu-system-arm)"
    ]
    assert not (tmp_path / "out").exists()
