"""PostgreSQL migration checks with golang-migrate's conventions.

Migrations are ``NNN_name.up.sql`` / ``NNN_name.down.sql`` in a guest
directory; state is the one row of ``schema_migrations(version, dirty)``.
Checks: everything applied and clean, required extensions present (with
versions), each up has a down and up -> down -> up round-trips in a scratch
database, and re-running the migrate unit changes nothing. A failing
migration is reported with its file, the statement and PostgreSQL's error.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from vmtest.errors import MigrationCheckFailed as MigrationCheckFailed  # its old home, for one release
from vmtest.machine_api import Machine

_FILE = re.compile(r"^(\d+)_(.+)\.(up|down)\.sql$")
_PSQL_ERROR = re.compile(r"^psql:(?P<file>[^:]+):(?P<line>\d+): ERROR:\s+(?P<error>.*)$", re.MULTILINE)
# journalctl's short and short-iso prefixes: "May 18 10:11:12 host unit[123]: ".
_JOURNAL_PREFIX = re.compile(
    r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) \S+ [^\s\[:]+(?:\[\d+\])?: ", re.MULTILINE
)
# golang-migrate's postgres driver: "migration failed: MSG (column C) in line L: QUERY (details: ERR)",
# QUERY being the whole file (database/error.go, database/postgres/postgres.go).
_MIGRATE_ERROR = re.compile(
    r"migration failed: (?P<error>.+?) in line (?P<line>\d+): (?P<query>.*?) \(details: (?P<details>[^\n]*)\)",
    re.DOTALL,
)

__all__ = [
    "Migration", "MigrationCheckFailed", "MigrationFailure", "MigrationReport", "Psql", "apply_file",
    "apply_files", "check_applied", "check_extensions", "check_migrations", "check_rerun_is_noop",
    "check_round_trip", "list_migrations"
]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str | None


@dataclass(frozen=True)
class MigrationFailure:
    """Where and why a migration failed."""

    file: str
    line: int | None
    statement: str
    error: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f" line {self.line}" if self.line else "")
        return f"{where}: {self.error}\n  statement: {self.statement}"


@dataclass
class MigrationReport:
    """What the checks observed (for summary.json)."""

    database: str
    version: int | None = None
    dirty: bool | None = None
    files: int = 0
    extensions: dict[str, str] = field(default_factory=dict)
    round_trip: bool | None = None
    rerun_noop: bool | None = None


@dataclass(frozen=True)
class Psql:
    """How to reach PostgreSQL in the guest: as the OS user ``user`` over the local socket."""

    user: str = "postgres"

    def command(self, database: str, args: str) -> str:
        return (
            f"runuser -u {shlex.quote(self.user)} -- psql -X -q -v ON_ERROR_STOP=1 --echo-errors "
            f"-d {shlex.quote(database)} {args} 2>&1"
        )

    def query(self, machine: Machine, database: str, sql: str, *more: str) -> str:
        """Run ``sql``, then each of ``more`` in a transaction of its own (one ``-c`` apiece: CREATE
        DATABASE refuses to run inside one); returns unaligned tuples; raises MigrationCheckFailed
        with psql's error."""
        statements = (sql, *more)
        args = " ".join(f"-c {shlex.quote(statement)}" for statement in statements)
        status, output = machine.execute(self.command(database, f"-At {args}"))
        if status != 0:
            raise MigrationCheckFailed(
                f"{machine.name}: SQL on {database} failed: {'; '.join(statements)}\n{output.strip()}"
            )
        return output.strip()


def list_migrations(machine: Machine, directory: str) -> list[Migration]:
    """The migrations in ``directory`` (guest), in version order; raises on unpaired or odd files."""
    listing = machine.succeed(f"ls -1 {shlex.quote(directory)}").split()
    ups: dict[int, tuple[str, str]] = {}
    downs: dict[int, str] = {}
    for name in listing:
        match = _FILE.match(name)
        if not match:
            continue
        version, label, direction = int(match.group(1)), match.group(2), match.group(3)
        target = ups if direction == "up" else downs
        if version in target:
            raise MigrationCheckFailed(
                f"{machine.name}: two {direction} migrations with version {version} in {directory}"
            )
        if direction == "up":
            ups[version] = (label, f"{directory}/{name}")
        else:
            downs[version] = f"{directory}/{name}"
    if not ups:
        raise MigrationCheckFailed(f"{machine.name}: no NNN_name.up.sql files in {directory}")
    orphans = sorted(set(downs) - set(ups))
    if orphans:
        raise MigrationCheckFailed(f"{machine.name}: down migrations without an up: {orphans}")
    return [Migration(v, ups[v][0], ups[v][1], downs.get(v)) for v in sorted(ups)]


def parse_psql_failure(output: str, fallback_file: str) -> MigrationFailure:
    """File, line, statement and error from psql's ``--echo-errors`` output."""
    match = _PSQL_ERROR.search(output)
    if not match:
        return MigrationFailure(fallback_file, None, "(unknown)", output.strip()[-500:] or "psql failed")
    rest = output[match.end():].splitlines()
    detail = [line for line in rest if line.startswith(("LINE ", "DETAIL:", "HINT:"))]
    # --echo-errors prints the failed statement as "psql:FILE:LINE: STATEMENT:  …" (continued
    # on the following lines); older psql prints it bare after the caret lines.
    statement_lines: list[str] = []
    for index, line in enumerate(rest):
        marker = re.match(r"^psql:[^:]+:\d+: STATEMENT:\s*(.*)$", line)
        if marker:
            statement_lines = [marker.group(1)]
            # It ends at its semicolon: what follows (in a journal, the tool's own lines) is not part of it.
            for more in rest[index + 1:]:
                if statement_lines[-1].rstrip().endswith(";") or more.startswith("psql:"):
                    break
                statement_lines.append(more)
            break
    else:
        statement_lines = [line for line in rest if line and not line.startswith(("LINE ", "DETAIL:", "HINT:", "psql:"))
                           and not line.strip().startswith("^")]
    statement = " ".join(part.strip() for part in statement_lines if part.strip()) or "(not echoed)"
    error = match.group("error").strip() + (f" ({'; '.join(detail)})" if detail else "")
    return MigrationFailure(match.group("file"), int(match.group("line")), statement[:500], error)


def journal_failure(journal: str, failing_file: str) -> MigrationFailure | None:
    """The last migration error in a migrate unit's journal (psql's or golang-migrate's), or None.

    psql names the file itself; golang-migrate does not, so ``failing_file`` (the
    dirty version's file) is used, with the statement at the line it reports.
    """
    text = _JOURNAL_PREFIX.sub("", journal)
    psql_errors = list(_PSQL_ERROR.finditer(text))
    if psql_errors:
        return parse_psql_failure(text[psql_errors[-1].start():], failing_file)
    migrate_errors = list(_MIGRATE_ERROR.finditer(text))
    if not migrate_errors:
        return None
    error = migrate_errors[-1]
    line = int(error.group("line"))
    query = error.group("query").splitlines()
    statement = query[line - 1].strip() if 0 < line <= len(query) else " ".join(query).strip()
    return MigrationFailure(failing_file, line or None, statement[:500] or "(not reported)",
                            error.group("error").strip())


def _unit_journal(machine: Machine, unit: str) -> str:
    _, journal = machine.execute(f"journalctl --no-pager -b -n 300 -u {shlex.quote(unit)} 2>&1")
    return journal


def apply_files(machine: Machine, database: str, paths: Sequence[str], psql: Psql = Psql()) -> None:
    """Apply migration files in order in one psql session, each in its own transaction.

    One session instead of one psql per file: under TCG each process start costs
    about a second. Raises MigrationCheckFailed naming the failing file and statement.
    """
    if not paths:
        return
    script = "".join(f"\\echo vmtest-applying {index}\nBEGIN;\n\\i '{path}'\nCOMMIT;\n"
                     for index, path in enumerate(paths))
    status, output = machine.execute(f"printf '%s' {shlex.quote(script)} | " + psql.command(database, "-f -"))
    if status != 0:
        started = re.findall(r"^vmtest-applying (\d+)$", output, re.MULTILINE)
        failing = paths[int(started[-1])] if started else paths[0]
        raise MigrationCheckFailed(f"{machine.name}: migration failed: {parse_psql_failure(output, failing)}")


def apply_file(machine: Machine, database: str, path: str, psql: Psql = Psql()) -> None:
    """Apply one migration file in a transaction; raises MigrationCheckFailed naming file and statement."""
    apply_files(machine, database, [path], psql)


def check_applied(machine: Machine, database: str, migrations: Sequence[Migration],
                  psql: Psql = Psql(), report: MigrationReport | None = None,
                  migrate_unit: str | None = None) -> tuple[int, bool]:
    """The recorded version is the newest file's and not dirty; returns (version, dirty).

    A dirty version raises MigrationCheckFailed naming its file and, from
    ``migrate_unit``'s journal (the unit ran the file, not this checker), the
    failing line, statement and error.
    """
    rows = psql.query(machine, database, "SELECT version, dirty FROM schema_migrations")
    if not rows:
        raise MigrationCheckFailed(f"{machine.name}: {database}.schema_migrations is empty: nothing was applied")
    version_text, _, dirty_text = rows.splitlines()[0].partition("|")
    version, dirty = int(version_text), dirty_text == "t"
    if report is not None:
        report.version, report.dirty, report.files = version, dirty, len(migrations)
    newest = migrations[-1]
    if dirty:
        failed = next((m for m in migrations if m.version == version), None)
        file = failed.up if failed else f"the file of version {version}"
        detail = ""
        if migrate_unit:
            failure = journal_failure(_unit_journal(machine, migrate_unit), file)
            detail = (f"\n  {failure}" if failure
                      else f"\n  (no psql or golang-migrate error in the journal of {migrate_unit})")
        # Each file runs in one transaction: nothing of it stayed, only the version's dirty flag.
        raise MigrationCheckFailed(
            f"{machine.name}: {database}.schema_migrations is dirty at version {version}: {file} failed "
            "and was rolled back whole (each file runs in one transaction); the version stays dirty "
            "until the file is fixed and the version forced" + detail
        )
    if version != newest.version:
        raise MigrationCheckFailed(
            f"{machine.name}: {database} is at version {version}, the newest migration is "
            f"{newest.version} ({newest.up})"
        )
    return version, dirty


def check_extensions(machine: Machine, database: str, required: Sequence[str],
                     psql: Psql = Psql(), report: MigrationReport | None = None) -> dict[str, str]:
    """Every ``required`` extension is installed in ``database``; returns name -> version."""
    rows = psql.query(machine, database, "SELECT extname, extversion FROM pg_extension ORDER BY 1")
    installed = dict(line.split("|", 1) for line in rows.splitlines() if "|" in line)
    if report is not None:
        report.extensions = installed
    missing = [name for name in required if name not in installed]
    if missing:
        raise MigrationCheckFailed(
            f"{machine.name}: extensions missing from {database}: {missing} (installed: {installed})"
        )
    return installed


def _schema(machine: Machine, database: str, psql: Psql) -> str:
    return machine.succeed(
        f"runuser -u {shlex.quote(psql.user)} -- pg_dump --schema-only --no-owner --no-privileges "
        f"-d {shlex.quote(database)} | grep -v -e '^--' -e '^SET ' -e '^SELECT pg_catalog' "
        # pg_dump >= 17.6 brackets every dump with a random "\restrict KEY" line
        "-e '^.restrict ' -e '^.unrestrict ' | sed '/^$/d'"
    )


def check_round_trip(machine: Machine, migrations: Sequence[Migration], *, scratch: str = "vmtest_migrations",
                     extensions: Sequence[str] = (), psql: Psql = Psql(),
                     report: MigrationReport | None = None) -> None:
    """In a scratch database: every up, every down in reverse, every up again; the schemas must match.

    ``extensions`` are created in the scratch database first, as the real
    database has them from outside the migrations (e.g. an init script).

    Raises MigrationCheckFailed for a missing down, a failing file (with its
    statement and error), a down that leaves tables behind, or a second up
    that builds a different schema.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", scratch):
        raise ValueError(f"scratch database name {scratch!r}: use lowercase letters, digits and _")
    missing = [m.up for m in migrations if m.down is None]
    if missing:
        raise MigrationCheckFailed(f"{machine.name}: up migrations without a down: {missing}")
    psql.query(machine, "postgres", f"DROP DATABASE IF EXISTS {scratch}", f"CREATE DATABASE {scratch}")
    try:
        if extensions:
            psql.query(machine, scratch,
                       "; ".join(f'CREATE EXTENSION IF NOT EXISTS "{extension}"' for extension in extensions))
        apply_files(machine, scratch, [migration.up for migration in migrations], psql)
        first = _schema(machine, scratch, psql)
        apply_files(machine, scratch, [str(migration.down) for migration in reversed(migrations)], psql)
        leftovers = psql.query(
            machine, scratch,
            "SELECT string_agg(tablename, ', ') FROM pg_tables WHERE schemaname = 'public'",
        )
        if leftovers:
            raise MigrationCheckFailed(f"{machine.name}: tables left after every down migration: {leftovers}")
        apply_files(machine, scratch, [migration.up for migration in migrations], psql)
        second = _schema(machine, scratch, psql)
        if first != second:
            diff = [line for line in second.splitlines() if line not in first.splitlines()][:10]
            raise MigrationCheckFailed(
                f"{machine.name}: up -> down -> up does not rebuild the same schema; new lines: {diff}"
            )
        if report is not None:
            report.round_trip = True
    finally:
        machine.execute(psql.command("postgres", f"-c {shlex.quote(f'DROP DATABASE IF EXISTS {scratch}')}"))


def check_rerun_is_noop(machine: Machine, database: str, migrate_unit: str, *, psql: Psql = Psql(),
                        report: MigrationReport | None = None) -> None:
    """Restarting the (oneshot) migrate unit leaves version, dirty flag and schema unchanged.

    Only the migrate unit restarts (job mode ignore-dependencies): the units that
    ``Requires=`` it, such as the backend, keep running. Raises MigrationCheckFailed
    with the unit's journal if the re-run fails, or naming the change.
    """
    before = (psql.query(machine, database, "SELECT version, dirty FROM schema_migrations"),
              _schema(machine, database, psql))
    status, output = machine.execute(
        f"systemctl restart --job-mode=ignore-dependencies {shlex.quote(migrate_unit)} 2>&1"
    )
    if status != 0:
        _, journal = machine.execute(f"journalctl --no-pager -n 20 -u {shlex.quote(migrate_unit)}")
        raise MigrationCheckFailed(f"{machine.name}: re-running {migrate_unit} failed: {output.strip()}\n{journal}")
    after = (psql.query(machine, database, "SELECT version, dirty FROM schema_migrations"),
             _schema(machine, database, psql))
    if before != after:
        raise MigrationCheckFailed(
            f"{machine.name}: re-running {migrate_unit} changed the database (version {before[0]} -> {after[0]})"
        )
    if report is not None:
        report.rerun_noop = True


def check_migrations(
    machine: Machine,
    *,
    database: str,
    directory: str,
    required_extensions: Sequence[str] = ("vector", "pgcrypto"),
    migrate_unit: str | None = None,
    round_trip: bool = True,
    psql: Psql = Psql(),
) -> MigrationReport:
    """Every check above, in order; returns what was observed, raises at the first failure."""
    report = MigrationReport(database)
    with machine.nested(f"checking migrations of {database} from {directory}"):
        migrations = list_migrations(machine, directory)
        check_applied(machine, database, migrations, psql, report, migrate_unit)
        check_extensions(machine, database, required_extensions, psql, report)
        if round_trip:
            check_round_trip(machine, migrations, extensions=required_extensions, psql=psql, report=report)
        if migrate_unit:
            check_rerun_is_noop(machine, database, migrate_unit, psql=psql, report=report)
    return report
