"""What a new user reads first (issue 23, items 3 and 5): the README's first screen says how to run the command
after set-up and shows what `make run` prints; a glossary defines the words the tables and results use; the
results README opens with what was and was not shown and where each table is, for a reader, not as a changelog."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
README = (ROOT / "README.md").read_text()


def section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_first_screen_says_how_to_run_the_cli_and_what_make_run_prints():
    first = README.split("\n## ", 1)[0]
    assert ".venv/bin/scorebench" in first and "source .venv/bin/activate" in first
    assert "| method | task | n | Acc@t1 | Acc@t2 |" in first  # the table `make run` prints
    assert re.search(r"\| base \| arith \| 100 \|", first) and "run directory: runs/base-arith-" in first
    assert "--limit" in first and "Writing a plugin" in first  # from the first run to one's own run and plugin


def test_the_table_shown_is_what_the_shipped_episodes_give():
    """The README's `make run` table is the shipped base run's first 100 problems, recomputed here."""
    from scorebench import get_task, tables
    from scorebench import metrics as M
    from scorebench.rundir import RunDir
    by_id = {e.id: e for e in RunDir(ROOT / "results" / "runs" / "base-arith-strict").episodes()}
    eps = [by_id[str(ex["id"])] for ex in get_task("arith").test()[:100]]
    row = tables.table([("base", "arith", M.compute(eps))]).splitlines()[2]
    assert row in README.split("\n## ", 1)[0]


GLOSSARY_TERMS = ["Acc@t1", "Δ(t1,t2)", "Δ i→c", "Δ c→i", "**cut**", "**Δ uncut**", "**y2 = y1**", "**RLOO**",
                  "**α (alpha)**", "**β1, β2**", "**D_StaR, D+_StaR**", "**D_SFT, D+_SFT**", "**Stage I, Stage II**",
                  "**KL**", "**preset**", "**issue #N**", "episode**", "brackets", "(incomplete)"]


def test_glossary_defines_the_words_of_tables_and_results():
    assert README.index("\n## Glossary\n") < README.index("\n## Writing a plugin\n")
    gloss = section(README, "Glossary")
    missing = [t for t in GLOSSARY_TERMS if t not in gloss]
    assert not missing, missing


def test_results_readme_opens_for_a_reader():
    text = (ROOT / "results" / "README.md").read_text()
    opening = text.split("\n## ", 1)[0]
    assert not re.search(r"issue #?\d|#\d", opening, re.I), "issue numbers in the opening"
    assert not re.search(r"\bchanged on\b|\bnow\b.*\bwas\b", opening)
    assert "What was shown" in opening and "What was not shown" in opening and "Where each table is" in opening
    for link in re.findall(r"\]\(([^)]+)\)", opening):  # every table it points to exists
        assert (ROOT / "results" / link).exists(), link
    for table in ("table1-arith/table1.md", "table2-arith-mix/table2.md", "table4-arith-mix/table4.md"):
        assert f"]({table})" in opening
    assert "Glossary" in opening


def test_readme_commands_and_definitions():
    """The README's ``--method-arg a=… b=…`` failed (one pair per flag), and it never defined Δ, Δ i→c, Δ c→i or
    said what the brackets are."""
    readme = README
    assert not re.findall(r"--(?:method|task)-arg [^\s`=]+=[^\s`]* ([^\s`-][^\s`]*=)", readme)
    for term in ("**Δ(t1,t2)** = Acc@t2 − Acc@t1", "**Δ i→c** =", "**Δ c→i** =", "95% paired-bootstrap"):
        assert term in readme
