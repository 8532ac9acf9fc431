"""The migration checker's messages: a dirty version names its file, line and statement from the journal."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest

from vmtest import migrations

# alicia-migrate (psql --echo-errors) as `journalctl -u alicia-migrate.service` shows it.
PSQL_JOURNAL = """\
May 18 10:11:02 server systemd[1]: Starting alicia-migrate.service - Alicia Database Migrations...
May 18 10:11:03 server alicia-migrate[812]: alicia-migrate: applying 003_typo.up.sql
May 18 10:11:03 server alicia-migrate[812]: psql:/usr/share/alicia/migrations/003_typo.up.sql:2: ERROR:  \
syntax error at or near "TABEL"
May 18 10:11:03 server alicia-migrate[812]: LINE 1: CREATE TABEL typo (id int);
May 18 10:11:03 server alicia-migrate[812]:                ^
May 18 10:11:03 server alicia-migrate[812]: psql:/usr/share/alicia/migrations/003_typo.up.sql:2: STATEMENT:  \
CREATE TABEL typo (id int);
May 18 10:11:03 server alicia-migrate[812]: alicia-migrate: 003_typo.up.sql failed; version 3 left dirty
May 18 10:11:03 server systemd[1]: alicia-migrate.service: Main process exited, code=exited, status=1/FAILURE
May 18 10:11:03 server systemd[1]: alicia-migrate.service: Failed with result 'exit-code'.
"""

# golang-migrate's CLI (`migrate -path … -database … up`), short-iso journal format; the query
# it echoes is the whole file, one journal line per line of it.
GOLANG_MIGRATE_JOURNAL = """\
2026-05-18T10:11:02+0000 server migrate[640]: 2026/05/18 10:11:02 error: migration failed: \
syntax error at or near "TABEL" (column 8) in line 2: CREATE TABLE ok_one (id int);
2026-05-18T10:11:02+0000 server migrate[640]: CREATE TABEL typo (id int);
2026-05-18T10:11:02+0000 server migrate[640]:  (details: pq: syntax error at or near "TABEL")
2026-05-18T10:11:02+0000 server systemd[1]: svc-migrate.service: Main process exited, code=exited, status=1/FAILURE
"""

CLEAN_JOURNAL = """\
May 18 10:11:02 server systemd[1]: Starting svc-migrate.service...
May 18 10:11:03 server alicia-migrate[812]: alicia-migrate: 0 applied, at version 2
May 18 10:11:03 server systemd[1]: Finished svc-migrate.service.
"""


def test_psql_errors_in_the_journal_name_file_line_and_statement() -> None:
    failure = migrations.journal_failure(PSQL_JOURNAL, "fallback.sql")
    assert failure is not None
    assert (failure.file, failure.line) == ("/usr/share/alicia/migrations/003_typo.up.sql", 2)
    assert failure.statement == "CREATE TABEL typo (id int);"
    assert failure.error.startswith('syntax error at or near "TABEL"')


def test_golang_migrate_errors_in_the_journal_name_line_and_statement() -> None:
    failure = migrations.journal_failure(GOLANG_MIGRATE_JOURNAL, "/m/003_typo.up.sql")
    assert failure is not None
    assert (failure.file, failure.line) == ("/m/003_typo.up.sql", 2)
    assert failure.statement == "CREATE TABEL typo (id int);"
    assert failure.error == 'syntax error at or near "TABEL" (column 8)'


def test_a_journal_without_an_error_names_nothing() -> None:
    # negative control: success lines and unrelated failures are not taken for a migration error
    assert migrations.journal_failure(CLEAN_JOURNAL, "f.sql") is None
    assert migrations.journal_failure("error: Dirty database version 3. Fix and force version.\n", "f.sql") is None


class DirtyDatabase:
    """Shaped like a Machine whose schema_migrations says (3, dirty) and whose migrate unit logged ``journal``."""

    name = "server"

    def __init__(self, journal: str) -> None:
        self.journal = journal
        self.commands: list[str] = []

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Any = 900) -> tuple[int, str]:
        self.commands.append(command)
        if "journalctl" in command:
            return 0, self.journal
        return 0, "3|t\n"

    def nested(self, message: str, attrs: dict[str, str] | None = None) -> Any:
        return nullcontext()


LISTED = [migrations.Migration(2, "init", "/m/002_init.up.sql", "/m/002_init.down.sql"),
          migrations.Migration(3, "typo", "/m/003_typo.up.sql", "/m/003_typo.down.sql")]


def test_a_dirty_version_says_rolled_back_whole_and_names_the_statement() -> None:
    machine = DirtyDatabase(PSQL_JOURNAL)
    with pytest.raises(migrations.MigrationCheckFailed) as raised:
        migrations.check_applied(machine, "alicia", LISTED, migrate_unit="alicia-migrate.service")  # type: ignore[arg-type]
    message = str(raised.value)
    assert "dirty at version 3: /m/003_typo.up.sql failed and was rolled back whole" in message
    assert "part-way" not in message
    assert "/usr/share/alicia/migrations/003_typo.up.sql line 2" in message
    assert "statement: CREATE TABEL typo (id int);" in message
    assert any("journalctl" in command and "alicia-migrate.service" in command for command in machine.commands)


def test_a_dirty_version_without_a_unit_or_an_error_says_so() -> None:
    with pytest.raises(migrations.MigrationCheckFailed) as raised:
        migrations.check_applied(DirtyDatabase(""), "svc", LISTED)  # type: ignore[arg-type]
    assert "rolled back whole" in str(raised.value) and "statement" not in str(raised.value)
    with pytest.raises(migrations.MigrationCheckFailed, match=r"no psql or golang-migrate error in the journal"):
        migrations.check_applied(DirtyDatabase(CLEAN_JOURNAL), "svc", LISTED,  # type: ignore[arg-type]
                                 migrate_unit="svc-migrate.service")


def test_an_echoed_statement_ends_at_its_semicolon() -> None:
    output = ("psql:/m/004_fk.up.sql:3: ERROR:  relation \"nope\" does not exist\n"
              "psql:/m/004_fk.up.sql:3: STATEMENT:  CREATE TABLE t (\n"
              "\t  id int REFERENCES nope);\n"
              "alicia-migrate: 004_fk.up.sql failed; version 4 left dirty\n")
    failure = migrations.parse_psql_failure(output, "f.sql")
    assert failure.statement == "CREATE TABLE t ( id int REFERENCES nope);"
