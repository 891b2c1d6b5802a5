"""MkDocs hook: reference tables generated from the code.

A page line that is exactly one of these markers is replaced by generated Markdown:

    <!-- rnnpipe:config stocks -->   every setting of `rnnpipe config stocks` (or monitor,
                                     reviews, lm, schedule): dotted key, type, default,
                                     allowed values and meaning
    <!-- rnnpipe:cli -->             every command of the `rnnpipe` Click group: usage, help,
                                     options and arguments
    <!-- rnnpipe:space stocks -->    the default search space of `rnnpipe tune stocks` (the
                                     config class's TUNE_SPACE) beside each key's default

Where the facts come from:

- the config classes: `rnnpipe.kinds` (each kind's `config` reference) plus the `rnnpipe
  config` names of `rnnpipe.cli.configs()` that are not kinds (`schedule`);
- defaults: `dataclasses.fields` (`default` / `default_factory`) of each section as the
  pipeline's own config builds it (so `train.epochs` of `lm` is the LM's 8, not
  `TrainConfig`'s 30);
- meanings: the source comments of each field, the comment lines directly above it and the
  trailing `# ...` on its line (a key without a comment gets an empty meaning);
- allowed values: the section's `CHOICES` class variable;
- the CLI: the Click objects themselves (`rnnpipe.cli.cli`); no command is run.

Nothing here imports torch, Prefect or MLflow (tests/test_docs.py checks it): a kind's
settings live in a module that imports none of them (`rnnpipe.pipelines.lm.config` for the language
model).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import io
import re
import sys
import textwrap
import tokenize
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # an installed rnnpipe comes first; a bare checkout works too
    sys.path.append(str(ROOT))

MARKER = re.compile(r"^<!--\s*rnnpipe:(?P<what>[a-z]+)(?:[ \t]+(?P<arg>[\w-]+))?\s*-->[ \t]*$", re.M)

# --- the MkDocs hook -----------------------------------------------------------------------


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand(markdown)


def expand(markdown: str) -> str:
    """The page with every marker replaced by its generated Markdown."""

    def replace(m: re.Match) -> str:
        what, arg = m.group("what"), m.group("arg")
        if what == "config" and arg:
            return config_markdown(arg)
        if what == "cli" and not arg:
            return cli_markdown()
        if what == "space" and arg:
            return space_markdown(arg)
        raise ValueError(
            f"unknown rnnpipe marker {m.group(0)!r} (expected '<!-- rnnpipe:config NAME -->', "
            "'<!-- rnnpipe:space NAME -->' or '<!-- rnnpipe:cli -->')"
        )

    return MARKER.sub(replace, markdown)


def space_markdown(name: str) -> str:
    """The default search space of `rnnpipe tune NAME`: the config class's TUNE_SPACE."""
    space = getattr(config_class(name), "TUNE_SPACE", {})
    rows = ["| key | range | default setting |", "|---|---|---|"]
    defaults = {k.name: k.default for k in config_keys(name)}
    rows += [f"| `{key}` | `{spec}` | {code(toml_value(defaults[key]))} |" for key, spec in space.items()]
    return "\n".join(rows) + "\n"


# --- config: which classes ------------------------------------------------------------------


def config_refs() -> dict[str, str]:
    """`rnnpipe config` NAME -> "module:Class": the pipeline kinds, then the other names the
    CLI knows (`schedule`)."""
    from rnnpipe import kinds

    refs = {k.name: k.config for k in kinds.KINDS.values()}
    from rnnpipe.cli import configs

    for name, ref in configs().items():
        refs.setdefault(name, ref)
    return refs


def config_class(name: str) -> type:
    refs = config_refs()
    if name not in refs:
        raise ValueError(f"unknown config {name!r} (known: {', '.join(refs)})")
    return load_class(refs[name])


def load_class(ref: str) -> type:
    """`"module:Class"` -> the class. Every kind keeps its settings in a module that imports
    no torch, Prefect or MLflow (tests/test_docs.py checks that generating imports none)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


# --- config: the keys -----------------------------------------------------------------------


class Key(NamedTuple):
    name: str  # dotted: "model.hidden_size"
    type: str
    default: Any
    meaning: str
    choices: list[str]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def config_keys(name: str) -> list[Key]:
    """Every key of `rnnpipe config NAME`, in the order the TOML lists them."""
    return list(_keys(config_class(name), None, ""))


def _keys(cls: type, instance: Any, prefix: str):
    comments = field_comments(cls)
    choices = getattr(cls, "CHOICES", {}) or {}
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name) if instance is not None else _default(f)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            # a section: its keys, with the values the pipeline's default_factory gave it
            yield from _keys(type(value), value, f"{prefix}{f.name}.")
            continue
        yield Key(
            f"{prefix}{f.name}",
            f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)),
            value,
            comments.get(f.name, ""),
            sorted(map(str, choices.get(f.name, ()))),
        )


def known_keys() -> set[str]:
    """Every dotted key of every `rnnpipe config` NAME."""
    return {k.name for name in config_refs() for k in config_keys(name)}


@cache
def _source(path: str) -> tuple[ast.Module, dict[int, str], set[int]]:
    """A file's tree, its comments by line, and the lines that hold only a comment."""
    text = Path(path).read_text()
    comments: dict[int, str] = {}
    alone: set[int] = set()
    lines = text.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            comments[row] = tok.string.lstrip("#").strip()
            if lines[row - 1].lstrip().startswith("#"):
                alone.add(row)
    return ast.parse(text), comments, alone


def _class_node(cls: type) -> tuple[ast.ClassDef, str] | None:
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if not path:
        try:
            path = inspect.getsourcefile(cls)
        except TypeError:
            return None
    if not path:
        return None
    tree = _source(path)[0]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return node, path
    return None


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment: the comment lines directly above the field, then the
    trailing comment of its line(s). A subclass's comment wins; one without a comment keeps
    the base class's."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        found = _class_node(klass)
        if found is None:
            continue
        node, path = found
        _, comments, alone = _source(path)
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            above: list[str] = []
            row = stmt.lineno - 1
            while row in alone:
                above.insert(0, comments[row])
                row -= 1
            trailing = [
                comments[r]
                for r in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
                if r in comments and r not in alone
            ]
            text = " ".join(p for p in [*above, *trailing] if p)
            if text:
                out[stmt.target.id] = text
    return out


# --- config: Markdown -----------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A default as `rnnpipe config` prints it (TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def code(text: str) -> str:
    """`text` as an inline code span (longer fences when it holds backticks)."""
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cell(text: str) -> str:
    """Prose for a table cell: HTML and pipes escaped outside code spans, one line."""
    parts = re.split(r"(`+[^`]*`+)", " ".join(text.split()))
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part)
        else:
            out.append(
                part.replace("&", "&amp;")
                .replace("<", "&lt;")
                .replace(">", "&gt;")
                .replace("|", "\\|")
                .replace("*", "\\*")
            )
    return "".join(out)


def config_markdown(name: str) -> str:
    cls = config_class(name)
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for k in config_keys(name):
        allowed = ", ".join(code(c) for c in k.choices)
        rows.append(
            f"| {code(k.name)} | {code(k.type)} | {code(toml_value(k.default))} | {allowed} | {cell(k.meaning)} |"
        )
    notes = _sample_notes(cls)
    out = [f"`rnnpipe config {name}` (class `{cls.__qualname__}`; {len(rows) - 2} keys)", "", *rows]
    if notes:
        out += ["", *notes]
    return "\n".join(out) + "\n"


def _sample_notes(cls: type) -> list[str]:
    """The defaults that describe a bundled sample only (a section's `SAMPLE_ONLY`) and the
    defaults another setting turns off (`REPLACES`)."""
    out = []
    for f in dataclasses.fields(cls):
        section = _default(f)
        sample = getattr(section, "SAMPLE_ONLY", {}) or {}
        if sample:
            given = ", ".join(f"{code(f'{f.name}.{k}')} becomes {code(toml_value(v))}" for k, v in sample.items())
            out.append(
                f"With a {code(f'{f.name}.path')} other than the default, the defaults that describe "
                f"the bundled sample give way unless you set them: {given}."
            )
    for key, replaced in (getattr(cls, "REPLACES", {}) or {}).items():
        given = ", ".join(f"{code(k)} becomes {code(toml_value(v))}" for k, v in replaced.items())
        out.append(f"Giving {code(key)} turns these defaults off unless you set them too: {given}.")
    return out


# --- the CLI --------------------------------------------------------------------------------


def cli_commands() -> list[tuple[str, Any, Any]]:
    """(full name, click command, context) of the group and every command and subcommand."""
    import click

    from rnnpipe.cli import cli

    out = []

    def walk(cmd: click.Command, ctx: click.Context) -> None:
        out.append((ctx.command_path, cmd, ctx))
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                child = cmd.get_command(ctx, sub)
                if child is not None and not child.hidden:
                    walk(child, click.Context(child, info_name=sub, parent=ctx))

    walk(cli, click.Context(cli, info_name="rnnpipe"))
    return out


def _help_markdown(text: str) -> list[str]:
    """Click help text: paragraphs as prose; a `\\b` paragraph of commands (examples, kept as
    written) as a code block; text after `\\f` is not help."""
    text = inspect.cleandoc(text or "").split("\f")[0]
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        lines = para.splitlines()
        if not lines:
            continue
        if lines[0].strip() == "\b" and any(line.strip().startswith(("rnnpipe ", "--")) for line in lines[1:]):
            body = textwrap.dedent("\n".join(lines[1:])).strip("\n")
            out += ["```text", body, "```", ""]  # examples, kept as written
        elif lines[0].strip() == "\b":
            out += [" ".join(line.strip() for line in lines[1:]), ""]
        else:
            out += [" ".join(line.strip() for line in lines), ""]
    return out


def _param_rows(cmd: Any, ctx: Any) -> list[str]:
    import click

    rows = []
    for p in cmd.get_params(ctx):
        if getattr(p, "hidden", False):
            continue
        if isinstance(p, click.Argument):
            names = p.make_metavar(ctx) if _takes_ctx(p.make_metavar) else p.make_metavar()
            kind = "argument" + ("" if p.required else ", optional")
            help_text = ""
            if isinstance(p.type, click.Choice):
                help_text = "one of " + ", ".join(code(str(c)) for c in p.type.choices)
        else:
            record = p.get_help_record(ctx)
            if record is None:
                continue
            names, kind, help_text = record[0], "option", cell(p.help or "")
            if p.multiple:
                kind += ", repeatable"
            if isinstance(p.type, click.Choice):
                choices = ", ".join(code(str(c)) for c in p.type.choices)
                help_text += (" " if help_text else "") + f"One of {choices}."
        default = _default_text(p, ctx)
        rows.append(f"| {code(names)} | {kind} | {help_text} | {default} |")
    return rows


def _takes_ctx(fn) -> bool:
    try:
        return "ctx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _default_text(p: Any, ctx: Any) -> str:
    default = p.get_default(ctx, call=False)
    if type(default).__name__ == "Sentinel":  # click >= 8.3 marks "no default" with click.core.UNSET
        default = None
    if callable(default) or default is None or default == () or default == []:
        return ""
    if getattr(p, "is_flag", False) and not getattr(p, "count", False):
        return "" if not default else "on"
    if default == "":
        return code('""')
    if getattr(p, "count", False) and not default:
        return ""
    return code(str(default))


def cli_markdown() -> str:
    out: list[str] = []
    for path, cmd, ctx in cli_commands():
        depth = path.count(" ")
        out += [f"{'#' * min(2 + depth, 4)} `{path}`", ""]
        usage = cmd.get_usage(ctx).strip()
        out += ["```text", usage, "```", ""]
        out += _help_markdown(cmd.help or "")
        rows = _param_rows(cmd, ctx)
        if rows:
            out += ["| option / argument | kind | help | default |", "|---|---|---|---|", *rows, ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # python docs/hooks/reference.py [config NAME | cli]
    args = sys.argv[1:] or ["cli"]
    print(config_markdown(args[1]) if args[0] == "config" else cli_markdown())
