"""Expand/contract: every migration leaves the previous release's code working.

During a rolling upgrade the database is migrated first and nodes of the previous
release keep serving on it until they are replaced (docs/rolling-upgrades.md). So a
migration may only *expand* the schema: new tables, new nullable columns or columns
with a default, new indexes, functions and views, backfills. What could break the
previous release is sorted in two classes:

* **contract**: it removes or reshapes something the previous release may read or
  write (DROP of anything, RENAME, a column's type, SET NOT NULL, a dropped default,
  a NOT NULL column without a default, TRUNCATE/DELETE). Allowed only in a migration
  whose header says ``-- contract: unused since <version>``, naming the release whose
  code stopped using it; that release must be the previous one or older, and no word
  the migration drops or renames may appear in the previous release's queries
  (``schema/queries``). So a contract step ships at least one release after the
  release that stopped using what it drops.
* **review**: it is compatible only if the previous release's writes satisfy it or
  its reads tolerate it: a constraint on an existing table, a trigger on one, a
  replaced function or view, a changed default, a dropped NOT NULL, and an index built
  on an existing table (the runner applies a migration in one transaction, where
  ``CREATE INDEX CONCURRENTLY`` cannot run: writes to the table wait for the build).
  The migration's header says why it is safe in a ``-- compatible: ...`` line.

A statement the lint does not know fails it: extend the rules with a test. The
statements are read with a small splitter (comments dropped, string and dollar-quoted
bodies blanked, so a function body or a comment's text is never taken for DDL), then
matched statement by statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs
import pytest
from releases import list_files, previous_release, show

from dwtrio.store.migrate import list_migrations
from dwtrio.store.queries import schema_dir

CONTRACT = "contract"
REVIEW = "review"
REFUSED = "refused"

#: Migrations written before this rule, whose files can no longer change (their checksums
#: are recorded in every database that applied them): what each review finding is and why
#: it is safe. New migrations carry this in a ``-- compatible:`` header line instead.
REVIEWED: dict[str, str] = {
    "0002_schedules.sql": (
        "the event-type CHECK of schedule_history_events is replaced by a wider one (every "
        "type older code writes stays allowed); the buffered-schedules index is built on "
        "schedules, a small table"
    ),
    "0003_visibility.sql": (
        "the search-attribute triggers on workflow_runs only copy typed values into the new "
        "workflow_search_attributes and never refuse a write; the list indexes are built on "
        "workflow_runs (writes wait for the build)"
    ),
    "0004_live_namespace_guard.sql": (
        "namespaces(name, status) is unique already (name is the key); namespace_status "
        "defaults to 'active', so older code's inserts satisfy its CHECK and the key as long "
        "as the namespace is live, which older code checks first"
    ),
    "0006_live_namespace_schedules.sql": (
        "namespace_status defaults to 'active', so a schedule older code creates in a live "
        "namespace satisfies the key; one created in a namespace deleted meanwhile is now "
        "refused by the database instead of stored there (older code answers that race 500)"
    ),
    "0007_run_status_counts.sql": (
        "the counter triggers on workflow_runs write run_status_counts only and never refuse "
        "a write; CREATE TRIGGER locks workflow_runs against writes while the backfill counts "
        "the existing runs"
    ),
    "0008_archived_runs.sql": (
        "a partial index over archived runs; building it reads all of workflow_runs while "
        "writes to it wait"
    ),
    "0009_run_status_counts_upkeep.sql": (
        "the transition trigger's function is replaced by one that writes the same counter "
        "rows in the same order"
    ),
}


@attrs.frozen
class Finding:
    kind: str
    what: str
    #: Identifiers the statement drops or renames (a contract step's check).
    names: tuple[str, ...] = ()


@attrs.define
class Seen:
    """What the migrations so far created: a migration may do anything to objects it
    creates itself; functions and views replaced later are reviewed."""

    functions: set[str] = attrs.field(factory=set)
    views: set[str] = attrs.field(factory=set)
    #: Tables created by the migration being read.
    new_tables: set[str] = attrs.field(factory=set)


# --- reading statements ---------------------------------------------------------------------
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(sql: str) -> list[str]:
    """The statements of a migration, lowercased and on one line each, with comments
    dropped and literals blanked (``''`` for strings, ``$$`` for dollar-quoted bodies)."""
    statements: list[str] = []
    buf: list[str] = []
    i, n = 0, len(sql)

    def flush() -> None:
        text = " ".join("".join(buf).split())
        if text:
            statements.append(text.lower())
        buf.clear()

    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            buf.append(" ")
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while depth:
                if i >= n:
                    raise ValueError("unterminated /* comment")
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            buf.append(" ")
        elif c == "'":
            j = i + 1
            while True:
                j = sql.find("'", j)
                if j < 0:
                    raise ValueError("unterminated string literal")
                if not sql.startswith("''", j):
                    break
                j += 2
            buf.append("''")
            i = j + 1
        elif c == '"':
            end = sql.find('"', i + 1)
            if end < 0:
                raise ValueError("unterminated quoted identifier")
            buf.append(sql[i : end + 1])
            i = end + 1
        elif c == "$" and (tag := _DOLLAR.match(sql, i)):
            end = sql.find(tag.group(0), tag.end())
            if end < 0:
                raise ValueError(f"unterminated {tag.group(0)} body")
            buf.append("$$")
            i = end + len(tag.group(0))
        elif c == ";":
            flush()
            i += 1
        else:
            buf.append(c)
            i += 1
    flush()
    return statements


def split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses (an ALTER TABLE's actions)."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


# --- rules ------------------------------------------------------------------------------------
NAME = r'(?:[a-z_][a-z0-9_$]*\.)?(?:[a-z_][a-z0-9_$]*|"[^"]+")'
_CREATE_TABLE = re.compile(
    rf"^create (?:unlogged |temp |temporary )?table (?:if not exists )?({NAME})"
)
_CREATE_INDEX = re.compile(
    rf"^create (unique )?index (concurrently )?(?:if not exists )?(?:{NAME} )?on (?:only )?({NAME})"
)
_CREATE_FUNCTION = re.compile(rf"^create (or replace )?(?:function|procedure) ({NAME})")
_CREATE_TRIGGER = re.compile(
    rf"^create (?:or replace )?(?:constraint )?trigger {NAME} .*? on ({NAME})"
)
_CREATE_VIEW = re.compile(
    rf"^create (or replace )?(?:materialized )?view (?:if not exists )?({NAME})"
)
_CREATE_OTHER = re.compile(r"^create (?:extension|type|sequence|schema|domain|collation) ")
_DATA = re.compile(r"^(?:insert into|update|select) ")
_ALTER_TABLE = re.compile(rf"^alter table (?:if exists )?(?:only )?({NAME}) (.*)$")
_ALTER_INDEX = re.compile(rf"^alter index (?:if exists )?{NAME} (.*)$")
_DROP = re.compile(
    r"^drop (table|view|materialized view|index|function|procedure|trigger|type|sequence|"
    r"schema|extension|domain) (?:concurrently )?(?:if exists )?(.*)$"
)
_REMOVE_ROWS = re.compile(r"^(?:truncate|delete from) ")
_ALTER_RENAME = re.compile(
    r"^alter (?:function|procedure|view|materialized view|sequence|type|schema) .* rename "
)
_TRANSACTION = re.compile(r"^(?:begin|commit|rollback|start transaction|savepoint|release)\b")
_VOLATILE_DEFAULT = re.compile(
    r"\bdefault .*\b(?:clock_timestamp|random|gen_random_uuid|nextval)\("
)
_INLINE_CONSTRAINT = re.compile(r"\b(?:check|references|unique|primary key)\b")
_CONSTRAINT_KIND = r"(?:primary key|unique|check|foreign key|exclude)\b"


def bare(name: str) -> str:
    """An identifier without its schema and its quotes."""
    return name.rsplit(".", 1)[-1].strip('"')


def classify(statement: str, seen: Seen) -> list[Finding]:
    """What in one statement (from :func:`split_statements`) needs a marker; records the
    objects it creates in ``seen``."""
    s = statement
    if m := _CREATE_TABLE.match(s):
        seen.new_tables.add(bare(m.group(1)))
        return []
    if m := _CREATE_INDEX.match(s):
        unique, concurrently, table = m.group(1), m.group(2), bare(m.group(3))
        if concurrently:
            return [
                Finding(
                    REFUSED,
                    "CREATE INDEX CONCURRENTLY cannot run in the transaction a migration runs in",
                )
            ]
        if table in seen.new_tables:
            return []
        if unique:
            return [Finding(REVIEW, f"unique index on existing table {table}")]
        return [Finding(REVIEW, f"index built on existing table {table} (writes wait)")]
    if m := _CREATE_FUNCTION.match(s):
        name = bare(m.group(2))
        replaced = m.group(1) and name in seen.functions
        seen.functions.add(name)
        return [Finding(REVIEW, f"function {name} replaced")] if replaced else []
    if m := _CREATE_TRIGGER.match(s):
        table = bare(m.group(1))
        return [] if table in seen.new_tables else [Finding(REVIEW, f"trigger on {table}")]
    if m := _CREATE_VIEW.match(s):
        name = bare(m.group(2))
        replaced = m.group(1) and name in seen.views
        seen.views.add(name)
        return [Finding(REVIEW, f"view {name} replaced")] if replaced else []
    if _CREATE_OTHER.match(s) or _DATA.match(s) or s.startswith(("comment on ", "grant ")):
        return []
    if m := _ALTER_TABLE.match(s):
        table = bare(m.group(1))
        if table in seen.new_tables:
            return []
        actions = split_top_level(m.group(2))
        return [f for action in actions for f in _alter_table_action(table, action, actions)]
    if m := _ALTER_INDEX.match(s):
        rest = m.group(1)
        if rest.startswith(("set (", "reset (")):
            return []
        if rest.startswith("rename to "):
            return [Finding(CONTRACT, "index renamed")]
    if m := _DROP.match(s):
        kind, rest = m.group(1), m.group(2)
        rest = re.sub(r"\s+(?:cascade|restrict)$", "", rest)
        names: tuple[str, ...]
        if kind == "trigger":  # DROP TRIGGER name ON table
            names = (bare(rest.split(" on ")[0]),)
        else:
            names = tuple(bare(re.sub(r"\(.*$", "", n).strip()) for n in split_top_level(rest))
        return [Finding(CONTRACT, f"DROP {kind.upper()} {', '.join(names)}", names)]
    if _REMOVE_ROWS.match(s):
        return [Finding(CONTRACT, "rows removed")]
    if _ALTER_RENAME.match(s):
        return [Finding(CONTRACT, "object renamed")]
    if _TRANSACTION.match(s):
        return [Finding(REFUSED, "the runner applies each migration in its own transaction")]
    if s.startswith("do "):
        return [Finding(REVIEW, "an anonymous DO block")]
    return [Finding(REFUSED, "a statement the expand/contract lint does not know")]


def _alter_table_action(table: str, action: str, actions: list[str]) -> list[Finding]:
    a = action
    if m := re.match(
        rf"^add (?!constraint |{_CONSTRAINT_KIND})(?:column )?(?:if not exists )?({NAME}) (.*)$", a
    ):
        column, rest = bare(m.group(1)), m.group(2)
        if " not null" in f" {rest}" and not re.search(r"\bdefault\b", rest):
            return [Finding(CONTRACT, f"{table}.{column} added NOT NULL without a default")]
        if _VOLATILE_DEFAULT.search(rest):
            return [Finding(REVIEW, f"{table}.{column}: a volatile default rewrites the table")]
        if _INLINE_CONSTRAINT.search(rest):
            return [Finding(REVIEW, f"{table}.{column} added with a constraint")]
        return []
    if m := re.match(rf"^add (?:constraint ({NAME}) )?{_CONSTRAINT_KIND}", a):
        if m.group(1) and f"drop constraint {m.group(1)}" in actions:
            return []  # a replacement, reported with its DROP
        return [Finding(REVIEW, f"constraint added to {table}")]
    if m := re.match(rf"^drop constraint (?:if exists )?({NAME})", a):
        name = bare(m.group(1))
        if any(re.match(rf"^add constraint {re.escape(name)} ", other) for other in actions):
            return [Finding(REVIEW, f"constraint {name} of {table} replaced")]
        return [Finding(CONTRACT, f"constraint {name} of {table} dropped", (name,))]
    if m := re.match(rf"^drop (?:column )?(?:if exists )?({NAME})", a):
        column = bare(m.group(1))
        return [Finding(CONTRACT, f"{table}.{column} dropped", (column,))]
    if m := re.match(rf"^rename (?:column |constraint )?({NAME}) to ", a):
        name = bare(m.group(1))
        return [Finding(CONTRACT, f"{table}.{name} renamed", (name,))]
    if a.startswith("rename to "):
        return [Finding(CONTRACT, f"table {table} renamed", (table,))]
    if m := re.match(rf"^alter (?:column )?({NAME}) (.*)$", a):
        column, change = bare(m.group(1)), m.group(2)
        if change.startswith(("type ", "set data type ")):
            return [Finding(CONTRACT, f"{table}.{column} changes type")]
        if change == "set not null":
            return [Finding(CONTRACT, f"{table}.{column} becomes NOT NULL")]
        if change == "drop default":
            return [Finding(CONTRACT, f"{table}.{column} loses its default")]
        if change == "drop not null":
            return [Finding(REVIEW, f"{table}.{column} may hold NULL")]
        if change.startswith("set default "):
            return [Finding(REVIEW, f"{table}.{column} gets another default")]
        if change.startswith(("set statistics ", "set storage ", "set compression ", "set (")):
            return []
    if a.startswith(("set (", "reset (", "validate constraint ", "owner to ")):
        return []
    if re.match(r"^(?:enable|disable) (?:always |replica )?trigger ", a):
        return [Finding(REVIEW, f"a trigger of {table} switched")]
    if a in ("set logged", "set unlogged"):
        return [Finding(REVIEW, f"{table} rewritten ({a})")]
    return [Finding(REFUSED, f"an ALTER TABLE action the lint does not know: {a[:60]}")]


# --- a migration as a whole -------------------------------------------------------------------
_CONTRACT_MARK = re.compile(r"^-- contract: unused since (\d+(?:\.\d+)*)\b", re.M)
_COMPATIBLE_MARK = re.compile(r"^-- compatible: \S", re.M)


def header(sql: str) -> str:
    """The comment lines a migration opens with."""
    lines = []
    for line in sql.splitlines():
        if line.startswith("--") or not line.strip():
            lines.append(line)
        else:
            break
    return "\n".join(lines)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def problems(
    name: str,
    sql: str,
    seen: Seen,
    *,
    previous_version: str,
    previous_mentions: Callable[[str], bool],
    reviewed: dict[str, str],
) -> list[str]:
    """Why the migration ``name`` breaks the expand/contract rule (empty: it does not)."""
    seen.new_tables = set()
    findings = [f for statement in split_statements(sql) for f in classify(statement, seen)]
    top = header(sql)
    out = [f"{name}: {f.what}" for f in findings if f.kind == REFUSED]
    contract = [f for f in findings if f.kind == CONTRACT]
    if contract:
        mark = _CONTRACT_MARK.search(top)
        if mark is None:
            out += [
                f"{name}: {f.what}: a contract step; its header needs "
                "`-- contract: unused since <version>`"
                for f in contract
            ]
        elif version_key(mark.group(1)) > version_key(previous_version):
            out.append(
                f"{name}: contract step for code unused since {mark.group(1)}, but nodes of "
                f"{previous_version} (the previous release) may still run beside this one"
            )
        else:
            out += [
                f"{name}: drops {n!r}, which the previous release's queries still mention"
                for f in contract
                for n in f.names
                if previous_mentions(n)
            ]
    review = [f for f in findings if f.kind == REVIEW]
    if review and not _COMPATIBLE_MARK.search(top) and name not in reviewed:
        out += [
            f"{name}: {f.what}: say why the previous release still works in a "
            "`-- compatible: ...` header line"
            for f in review
        ]
    if name in reviewed and not review:
        out.append(f"{name}: listed in REVIEWED but nothing in it needs a review")
    return out


def mentioned_in(texts: list[str]) -> Callable[[str], bool]:
    def mentions(word: str) -> bool:
        pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", re.I)
        return any(pattern.search(text) for text in texts)

    return mentions


# --- the repository's migrations --------------------------------------------------------------
def test_every_migration_is_an_expand_step_or_a_marked_contract_step() -> None:
    release = previous_release()
    cache: list[str] = []

    def previous_mentions(word: str) -> bool:
        # Read (from git) only when a contract step asks.
        if not cache:
            cache.extend(show(release, path) for path in list_files(release, "schema/queries"))
        return mentioned_in(cache)(word)

    seen = Seen()
    found: list[str] = []
    for migration in list_migrations():
        found += problems(
            migration.path.name,
            migration.path.read_text(),
            seen,
            previous_version=release.version,
            previous_mentions=previous_mentions,
            reviewed=REVIEWED,
        )
    assert found == []


def test_reviewed_names_only_existing_migrations() -> None:
    names = {p.name for p in (schema_dir() / "migrations").glob("*.sql")}
    assert set(REVIEWED) <= names


# --- the lint itself --------------------------------------------------------------------------
EXISTING = "CREATE TABLE t (a int); CREATE TABLE old_things (a int);"


def kinds(sql: str, *, earlier: str = EXISTING) -> list[tuple[str, tuple[str, ...]]]:
    seen = Seen()
    for statement in split_statements(earlier):
        classify(statement, seen)
    seen.new_tables = set()
    return [(f.kind, f.names) for s in split_statements(sql) for f in classify(s, seen)]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE TABLE fresh (a int NOT NULL); CREATE INDEX fresh_a ON fresh (a)", []),
        ("CREATE TABLE fresh (a int); ALTER TABLE fresh ADD COLUMN b int NOT NULL", []),
        ("CREATE UNLOGGED TABLE IF NOT EXISTS fresh (a int)", []),
        ("ALTER TABLE t ADD COLUMN c text", []),
        ("ALTER TABLE t ADD c text", []),
        ("ALTER TABLE t ADD COLUMN c text NOT NULL DEFAULT 'x', ADD COLUMN d int", []),
        ("ALTER TABLE t ADD COLUMN c text NOT NULL", [(CONTRACT, ())]),
        ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()", [(REVIEW, ())]),
        ("ALTER TABLE t ADD COLUMN c int REFERENCES old_things (a)", [(REVIEW, ())]),
        ("ALTER TABLE t DROP COLUMN c", [(CONTRACT, ("c",))]),
        ("ALTER TABLE t DROP c", [(CONTRACT, ("c",))]),
        ("ALTER TABLE t RENAME COLUMN a TO b", [(CONTRACT, ("a",))]),
        ("ALTER TABLE t RENAME TO u", [(CONTRACT, ("t",))]),
        ("ALTER TABLE t ALTER COLUMN a TYPE bigint", [(CONTRACT, ())]),
        ("ALTER TABLE t ALTER a SET DATA TYPE bigint", [(CONTRACT, ())]),
        ("ALTER TABLE t ALTER COLUMN a SET NOT NULL", [(CONTRACT, ())]),
        ("ALTER TABLE t ALTER COLUMN a DROP DEFAULT", [(CONTRACT, ())]),
        ("ALTER TABLE t ALTER COLUMN a DROP NOT NULL", [(REVIEW, ())]),
        ("ALTER TABLE t ALTER COLUMN a SET DEFAULT 0", [(REVIEW, ())]),
        ("ALTER TABLE t ALTER COLUMN a SET STATISTICS 500", []),
        ("ALTER TABLE t SET (fillfactor = 50), ALTER COLUMN a SET (n_distinct = 10)", []),
        ("ALTER TABLE t ADD CONSTRAINT k CHECK (a > 0) NOT VALID", [(REVIEW, ())]),
        ("ALTER TABLE t ADD UNIQUE (a)", [(REVIEW, ())]),
        ("ALTER TABLE t VALIDATE CONSTRAINT k", []),
        ("ALTER TABLE t DROP CONSTRAINT k, ADD CONSTRAINT k CHECK (a IN (1, 2))", [(REVIEW, ())]),
        ("ALTER TABLE t DROP CONSTRAINT k", [(CONTRACT, ("k",))]),
        ("ALTER TABLE t DISABLE TRIGGER tr", [(REVIEW, ())]),
        ("ALTER TABLE t CLUSTER ON t_pkey", [(REFUSED, ())]),
        ("DROP TABLE old_things", [(CONTRACT, ("old_things",))]),
        ("DROP TABLE IF EXISTS a, b CASCADE", [(CONTRACT, ("a", "b"))]),
        ("DROP INDEX CONCURRENTLY IF EXISTS t_a_idx", [(CONTRACT, ("t_a_idx",))]),
        ("DROP FUNCTION f(text)", [(CONTRACT, ("f",))]),
        ("DROP TRIGGER tr ON t", [(CONTRACT, ("tr",))]),
        ("TRUNCATE t", [(CONTRACT, ())]),
        ("DELETE FROM t WHERE a = 1", [(CONTRACT, ())]),
        ("UPDATE t SET a = 1 WHERE a IS NULL; INSERT INTO t SELECT 1", []),
        ("CREATE INDEX t_a ON t (a)", [(REVIEW, ())]),
        ("CREATE UNIQUE INDEX t_a ON ONLY t (a)", [(REVIEW, ())]),
        ("CREATE INDEX CONCURRENTLY t_a ON t (a)", [(REFUSED, ())]),
        ("ALTER INDEX t_a SET (fillfactor = 70)", []),
        ("ALTER INDEX t_a RENAME TO t_b", [(CONTRACT, ())]),
        (
            "CREATE TRIGGER tr AFTER INSERT ON t REFERENCING NEW TABLE AS n"
            " FOR EACH STATEMENT EXECUTE FUNCTION g()",
            [(REVIEW, ())],
        ),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", []),
        ("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", []),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", []),
        ("COMMENT ON TABLE t IS 'we DROP COLUMN x; then TRUNCATE t'", []),
        (
            "CREATE FUNCTION g() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
            "BEGIN DELETE FROM t; DROP TABLE t; RETURN NULL; END $body$",
            [],
        ),
        ("-- DROP TABLE t;\n/* DROP TABLE /* nested */ t; */ SELECT 1", []),
        ("BEGIN; ALTER TABLE t ADD COLUMN c int; COMMIT", [(REFUSED, ()), (REFUSED, ())]),
        ("DO $$ BEGIN PERFORM 1; END $$", [(REVIEW, ())]),
        ("VACUUM t", [(REFUSED, ())]),
    ],
)
def test_statement_rules(sql: str, expected: list[tuple[str, tuple[str, ...]]]) -> None:
    assert kinds(sql) == expected


def test_replacing_what_an_earlier_migration_created_is_reviewed() -> None:
    earlier = EXISTING + "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;"
    earlier += "CREATE VIEW v AS SELECT 1;"
    replace = "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$"
    assert kinds(replace, earlier=earlier) == [(REVIEW, ())]
    assert kinds("CREATE OR REPLACE VIEW v AS SELECT 2", earlier=earlier) == [(REVIEW, ())]


def test_splitter_keeps_statements_whole() -> None:
    sql = "CREATE TABLE t (a text DEFAULT 'it''s; fine');\n\n-- done;\nSELECT 1"
    assert split_statements(sql) == ["create table t (a text default '')", "select 1"]
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("SELECT 'open")
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("CREATE FUNCTION f() AS $x$ body")


def lint(sql: str, *, mentions: tuple[str, ...] = (), reviewed: bool = False) -> list[str]:
    seen = Seen()
    for statement in split_statements(EXISTING):
        classify(statement, seen)
    return problems(
        "0100_x.sql",
        sql,
        seen,
        previous_version="0.4.0",
        previous_mentions=mentioned_in([" ".join(mentions)]),
        reviewed={"0100_x.sql": "why"} if reviewed else {},
    )


def test_a_contract_step_needs_its_marker_and_an_old_enough_release() -> None:
    drop = "ALTER TABLE t DROP COLUMN legacy_flag;\n"
    assert lint("-- Drop the flag.\n" + drop) == [
        "0100_x.sql: t.legacy_flag dropped: a contract step; its header needs "
        "`-- contract: unused since <version>`"
    ]
    assert lint("-- contract: unused since 0.4.0\n" + drop) == []
    assert lint("-- contract: unused since 0.3.9\n" + drop) == []
    assert lint("-- contract: unused since 0.5.0\n" + drop) == [
        "0100_x.sql: contract step for code unused since 0.5.0, but nodes of 0.4.0 "
        "(the previous release) may still run beside this one"
    ]
    # The marker below the first statement is not a header.
    assert lint(drop + "-- contract: unused since 0.4.0\n") != []


def test_a_contract_step_may_not_drop_what_the_previous_release_reads() -> None:
    sql = "-- contract: unused since 0.4.0\nALTER TABLE t DROP COLUMN legacy_flag;\n"
    assert lint(sql, mentions=("SELECT legacy_flags FROM t",)) == []
    assert lint(sql, mentions=("SELECT id, legacy_flag FROM t",)) == [
        "0100_x.sql: drops 'legacy_flag', which the previous release's queries still mention"
    ]


def test_a_review_finding_needs_a_compatible_line_or_a_reviewed_entry() -> None:
    sql = "ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0);\n"
    assert lint(sql) == [
        "0100_x.sql: constraint added to t: say why the previous release still works in a "
        "`-- compatible: ...` header line"
    ]
    assert lint("-- compatible: every a older code writes is positive\n" + sql) == []
    assert lint(sql, reviewed=True) == []
    assert lint("ALTER TABLE t ADD COLUMN b int;\n", reviewed=True) == [
        "0100_x.sql: listed in REVIEWED but nothing in it needs a review"
    ]


def test_refused_statements_fail_whatever_the_header() -> None:
    sql = "-- compatible: yes\n-- contract: unused since 0.1.0\nVACUUM t;\n"
    assert lint(sql) == ["0100_x.sql: a statement the expand/contract lint does not know"]


def test_markers_live_in_the_header_only() -> None:
    assert header("-- a\n--\n-- compatible: b\n\nSELECT 1;\n-- contract: x\n") == (
        "-- a\n--\n-- compatible: b\n"
    )
