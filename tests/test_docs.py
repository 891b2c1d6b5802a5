"""The documentation names only config keys and commands that exist, and its generated
reference is complete and light (docs/hooks/reference.py, the MkDocs hook that writes the
configuration and CLI tables from the code)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "reference.py"
HEAVY = ("torch", "prefect", "mlflow")


def _load_hook():
    spec = importlib.util.spec_from_file_location("rnnpipe_docs_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


# --- what the pages mention -----------------------------------------------------------------

FENCE = re.compile(r"^ *(```|~~~)[^\n]*\n(.*?)^ *\1[ \t]*$", re.M | re.S)
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def code_parts(text: str) -> tuple[list[str], list[str]]:
    """(fenced code blocks, inline code spans) of a Markdown text."""
    blocks = [m.group(2) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    return blocks, [m.group(2) for m in INLINE.finditer(prose)]


FILE_SUFFIXES = {"py", "md", "toml", "json", "csv", "parquet", "png", "jsonl", "txt", "npy", "db"}
SET_KEY = re.compile(r"--(?:set|grid)[ =]+['\"]?([A-Za-z_][\w]*)\.([\w.]+)=")


def config_key_mentions(text: str, sections: set[str]) -> set[str]:
    """Dotted `section.key` names the text presents as config keys: any `--set KEY=` or
    `--grid KEY=` in its code, and a token `section.key` in an inline code span whose section
    is a config section (not followed by `(`: a method call; not part of a path or module)."""
    blocks, spans = code_parts(text)
    found = {f"{a}.{b}" for part in (*blocks, *spans) for a, b in SET_KEY.findall(part)}
    token = re.compile(r"(?<![\w./@:<-])(" + "|".join(map(re.escape, sorted(sections))) + r")\.([A-Za-z_]\w*)(?![\w(])")
    for span in spans:
        for a, b in token.findall(span):
            if b not in FILE_SUFFIXES:  # `predict.py`: a file, not a key
                found.add(f"{a}.{b}")
    return found


COMMAND = re.compile(r"(?<![\w./-])rnnpipe((?:[ \t]+-{1,2}[a-z][\w-]*)*)[ \t]+([a-z][\w-]*)(?:[ \t]+([a-z][\w-]*))?")


def command_mentions(text: str) -> set[tuple[str, ...]]:
    """`rnnpipe CMD [WORD]` written in the text's code (global options such as -q skipped)."""
    blocks, spans = code_parts(text)
    out = set()
    for part in (*blocks, *spans):
        for m in COMMAND.finditer(part):
            out.add((m.group(2),) + ((m.group(3),) if m.group(3) else ()))
    return out


def command_problem(words: tuple[str, ...]) -> str | None:
    """Why `rnnpipe WORDS...` is not a command of the Click group (None: it is)."""
    from rnnpipe.cli import cli

    ctx = click.Context(cli, info_name="rnnpipe")
    cmd = cli.get_command(ctx, words[0])
    if cmd is None:
        return f"no command {words[0]!r}"
    if len(words) < 2:
        return None
    if isinstance(cmd, click.Group):
        return None if cmd.get_command(ctx, words[1]) is not None else f"no command {' '.join(words)!r}"
    args = [p for p in cmd.params if isinstance(p, click.Argument)]
    if args and isinstance(args[0].type, click.Choice) and words[1] not in args[0].type.choices:
        return f"rnnpipe {words[0]}: {words[1]!r} is not one of {', '.join(args[0].type.choices)}"
    return None


# --- the checks -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> set[str]:
    return hook.known_keys()


def test_every_documented_config_key_exists(keys):
    sections = {k.split(".")[0] for k in keys}
    bad = [
        f"{path.relative_to(ROOT)}: {key}"
        for path in doc_files()
        for key in sorted(config_key_mentions(path.read_text(), sections))
        if key not in keys
    ]
    assert not bad, "config keys that no `rnnpipe config NAME` has:\n" + "\n".join(bad)


def test_every_documented_command_exists():
    bad = [
        f"{path.relative_to(ROOT)}: rnnpipe {' '.join(words)}: {problem}"
        for path in doc_files()
        for words in sorted(command_mentions(path.read_text()))
        if (problem := command_problem(words))
    ]
    assert not bad, "commands that the CLI lacks:\n" + "\n".join(bad)


def test_the_checks_can_fail(keys):
    """The scanners find what they must, so that a wrong name in the docs is reported."""
    sections = {k.split(".")[0] for k in keys}
    text = (
        "Run `rnnpipe train stocks --set model.nonexistent=3`, then `rnnpipe trian stocks`, "
        "`rnnpipe data synth-vitalz`, `rnnpipe config nope`; see `window.lookbak` and "
        "`train.epochs`, but not `model.predict(x)` nor `rnnpipe/text.py` nor `predict.py` "
        "nor `rnnpipe.threads.SPARE`.\n"
        "```bash\nrnnpipe sweep stocks --grid model.cel=lstm,gru\n```\n"
    )
    mentioned = config_key_mentions(text, sections)
    assert mentioned == {"model.nonexistent", "window.lookbak", "train.epochs", "model.cel"}
    assert {k for k in mentioned if k not in keys} == {"model.nonexistent", "window.lookbak", "model.cel"}
    problems = {w: command_problem(w) for w in command_mentions(text)}
    assert problems[("trian", "stocks")] == "no command 'trian'"
    assert problems[("data", "synth-vitalz")] and problems[("config", "nope")]
    assert problems[("train", "stocks")] is None and problems[("sweep", "stocks")] is None


def test_the_generated_config_tables_are_complete():
    from rnnpipe import kinds

    stocks = hook.config_markdown("stocks")
    for key in ("model.hidden_size", "train.epochs", "data.path", "register.gate_baselines", "backtest.folds"):
        assert f"| `{key}` |" in stocks
    assert "| `model.hidden_size` | `int` | `64` |" in stocks
    # a section's defaults are the pipeline's own, not the shared class's
    assert "| `train.epochs` | `int` | `8` |" in hook.config_markdown("lm")
    assert "| `train.epochs` | `int` | `15` |" in hook.config_markdown("monitor")
    # meanings come from the source comments, choices from CHOICES
    row = next(line for line in stocks.splitlines() if line.startswith("| `model.cell` |"))
    assert "`gru`, `lstm`, `rnn`" in row and "rnn \\| lstm \\| gru" in row
    for name in kinds.names():
        table = hook.config_markdown(name)
        for key in hook.config_keys(name):
            assert f"| `{key.name}` |" in table
    pages = (ROOT / "docs" / "reference" / "config.md").read_text()
    for kind in kinds.KINDS.values():
        if kind.config.startswith("rnnpipe."):  # a kind that ships, not one declared by a test
            assert f"<!-- rnnpipe:config {kind.name} -->" in pages, f"docs/reference/config.md lacks {kind.name}"


def test_the_generated_cli_reference_lists_every_command():
    text = hook.cli_markdown()
    commands = [path for path, _, _ in hook.cli_commands()]
    assert {"rnnpipe train", "rnnpipe predict", "rnnpipe data synth-vitals", "rnnpipe config"} <= set(commands)
    for path in commands:
        assert f"`{path}`" in text
    assert "Usage: rnnpipe train [OPTIONS] {" in text and "`--set KEY=VALUE`" in text
    assert "UNSET" not in text  # click's "no default" marker never reaches the page


def test_markers_expand_and_an_unknown_one_fails():
    out = hook.expand("a\n<!-- rnnpipe:config stocks -->\nb\n<!-- rnnpipe:cli -->\n")
    assert "<!--" not in out and "| `train.epochs` |" in out and "`rnnpipe sweep`" in out
    with pytest.raises(ValueError, match="unknown config 'nope'"):
        hook.expand("<!-- rnnpipe:config nope -->\n")
    with pytest.raises(ValueError, match="unknown rnnpipe marker"):
        hook.expand("<!-- rnnpipe:tables -->\n")


def test_generating_imports_no_torch_prefect_or_mlflow():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('reference', {str(HOOK)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['reference'] = m; spec.loader.exec_module(m)\n"
        "from rnnpipe import kinds\n"
        "marks = ''.join(f'<!-- rnnpipe:config {n} -->\\n' for n in m.config_refs()) + '<!-- rnnpipe:cli -->\\n'\n"
        "assert '<!--' not in m.expand(marks)\n"
        f"print(sorted(k for k in {HEAVY!r} if k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
