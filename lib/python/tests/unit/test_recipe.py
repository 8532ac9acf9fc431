from __future__ import annotations

from pathlib import Path

import pytest

from vmtest.errors import RecipeError
from vmtest.portable.image.builder import image_key
from vmtest.portable.image.recipe import load_recipe
from vmtest.portable.runtime.spec import parse_machine_specs


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_valid_recipe_loads_with_includes(tmp_path: Path) -> None:
    write(tmp_path / "motd", "hello\n")
    write(tmp_path / "base.toml", 'suite = "trixie"\npackages = ["curl"]\n[files."/etc/motd"]\nsource = "motd"\n')
    sub = tmp_path / "sub"
    sub.mkdir()
    recipe = load_recipe(write(sub / "web.toml", 'include = ["../base.toml"]\npackages = ["nginx-light"]\n'
                               'enable = ["nginx.service"]\n[[users]]\nname = "baleen"\ngroups = ["docker"]\n'
                               '[vm]\nmemory_mb = 2048\n'))
    assert recipe.name == "web" and recipe.arch == "amd64" and recipe.machine_arch == "x86_64"
    assert recipe.packages == ("curl", "nginx-light")
    assert recipe.files[0].source == str((tmp_path / "motd").resolve())
    assert recipe.users[0].groups == ("docker",)
    assert recipe.vm.memory_mb == 2048


def test_includes_merge_with_each_other_not_only_with_their_includer(tmp_path: Path) -> None:
    write(tmp_path / "units.toml", 'enable = ["a.service"]\nmask = ["x.service"]\n[files."/etc/a"]\ntext = "a"\n')
    write(tmp_path / "lean.toml", 'mask = ["y.service"]\n[files."/etc/b"]\ntext = "b"\n')
    recipe = load_recipe(write(tmp_path / "server.toml", 'include = ["units.toml", "lean.toml"]\n'
                               'mask = ["z.service"]\n[files."/etc/c"]\ntext = "c"\n'))
    assert sorted(spec.path for spec in recipe.files) == ["/etc/a", "/etc/b", "/etc/c"]
    assert recipe.mask == ("x.service", "y.service", "z.service")
    assert recipe.enable == ("a.service",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('suite = "jessie"', "suite: 'jessie' is not one of"),
        ('arch = "riscv"', "arch: 'riscv' is not one of"),
        ('packages = ["Bad Name"]', "packages: 'Bad Name': not a valid Debian package name"),
        ('packages = "curl"', "packages: expected a list of strings"),
        ('enable = ["nginx"]', "enable: 'nginx': not a systemd unit name"),
        ('[files."/etc/x"]\nsource = "missing.txt"', "files.'/etc/x': source file"),
        ('[files."etc/x"]\ntext = "x"', "the target path must be absolute"),
        ('[files."/etc/x"]\ntext = "x"\nsource = "y"', "give exactly one of 'text' and 'source'"),
        ('[files."/etc/x"]\ntext = "x"\nmode = "rwx"', "is not an octal permission"),
        ('[[users]]\nname = "Bad User"', "a user needs a valid 'name'"),
        ('[vm]\nram = 5', "vm.ram: unknown key (known: memory_mb, cores, disk_free_mb, graphics)"),
        ('[vm]\nmemory = 512', "vm.memory: unknown key"),
        ('[vm]\nmemory_mb = "lots"', "vm.memory_mb: 'lots' is not a whole number (allowed: 128 to 262144)"),
        ('[vm]\ncores = 0', "vm.cores: 0 is out of range (allowed: 1 to 64)"),
        ('[vm]\ncores = true', "vm.cores: True is not a whole number"),
        ('[vm]\ngraphics = "yes"', "vm.graphics: 'yes' is not true or false"),
        ('pakages = ["curl"]', "unknown keys ['pakages']"),
        ("packages = [", "not valid TOML"),
        ('include = ["loop.toml"]', "includes itself"),
    ],
)
def test_bad_recipes_name_the_recipe_and_the_item(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path / "loop.toml", body + "\n")
    with pytest.raises(RecipeError) as raised:
        load_recipe(path)
    assert str(raised.value).startswith(f"recipe {path}")
    assert message in str(raised.value)


def test_cache_key_follows_content(tmp_path: Path) -> None:
    source = write(tmp_path / "data", "one")
    path = write(tmp_path / "r.toml", '[files."/etc/data"]\nsource = "data"\n[vm]\nmemory_mb = 512\n')
    first = image_key(load_recipe(path))
    assert image_key(load_recipe(path)) == first
    source.write_text("two")
    assert image_key(load_recipe(path)) != first, "a changed source file must rebuild"
    source.write_text("one")
    write(path, '[files."/etc/data"]\nsource = "data"\n[vm]\nmemory_mb = 4096\n')
    assert image_key(load_recipe(path)) == first, "VM settings do not change the image"


def test_machine_specs(tmp_path: Path) -> None:
    recipe = write(tmp_path / "server.toml", 'suite = "trixie"\n')
    specs = parse_machine_specs([f"server={recipe},client={recipe}"])
    assert [s.name for s in specs] == ["server", "client"]
    assert parse_machine_specs([str(recipe)])[0].name == "server"
    table = write(tmp_path / "test.toml", '[machines.web]\nrecipe = "server.toml"\nvlans = [1, 2]\nmemory_mb = 900\n')
    spec = parse_machine_specs([str(table)])[0]
    assert (spec.name, spec.vlans, spec.memory_mb) == ("web", (1, 2), 900)
    with pytest.raises(RecipeError, match="used twice: a"):
        parse_machine_specs([f"a={recipe}", f"a={recipe}"])
    with pytest.raises(RecipeError, match="machine name 'Web_1'"):
        parse_machine_specs([f"Web_1={recipe}"])
    bad = write(tmp_path / "bad.toml", '[machines.web]\nrecipe = "server.toml"\nvlans = [0]\n')
    with pytest.raises(RecipeError, match="vlans must be a list of numbers 1-255"):
        parse_machine_specs([str(bad)])
    niced = write(tmp_path / "niced.toml", '[machines.web]\nrecipe = "server.toml"\nboot_nice = 19\n')
    assert parse_machine_specs([str(niced)])[0].boot_nice == 19
    for value in ("-5", "20", "true", '"low"'):
        write(niced, f'[machines.web]\nrecipe = "server.toml"\nboot_nice = {value}\n')
        with pytest.raises(RecipeError, match="boot_nice must be a nice value 0-19"):
            parse_machine_specs([str(niced)])


def test_cache_key_does_not_depend_on_the_checkout_location(tmp_path: Path) -> None:
    for place in ("a", "b"):
        (tmp_path / place).mkdir()
        write(tmp_path / place / "data", "same content")
        write(tmp_path / place / "r.toml", '[files."/etc/data"]\nsource = "data"\n')
    assert image_key(load_recipe(tmp_path / "a" / "r.toml")) == image_key(load_recipe(tmp_path / "b" / "r.toml"))
