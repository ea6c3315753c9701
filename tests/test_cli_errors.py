"""Bad input to `edgeagent run` through the real CLI (`python -m agent`): one clear line on
stderr that names the file / key / value, the error kind's exit code, never a traceback.
`edgeagent validate` with the same arguments gives the same exit code and the same line, and
docs/configuration.md's bad-input table lists every case with both, word for word.
The agent processes run side by side (each is mostly interpreter start-up)."""

import os
import re

import pytest

from bad_inputs import CASES, RUN_TIME_CASES, corrupt_onnx
from conftest import MODELS, ROOT

RUN_ONLY = ("--no-mqtt", "--log-level", "--max-frames")      # flags validate does not take


def bad_run_args(tmp_path, sample_video, case):
    """(argv, exit code, fragments) for one mistake on top of an otherwise working run."""
    args, code, fragments = case(tmp_path)
    base = ["run", "--no-mqtt", "--log-level", "error", "--max-frames", "2"]
    if "--state-dir" not in args:
        base += ["--state-dir", str(tmp_path / "state-ok")]
    if "--source" not in args:
        base += ["--source", "file://" + sample_video]
    return base + args, code, fragments


def validate_args(run_argv):
    """`validate` with the arguments of a `run`, less the flags only `run` has."""
    argv, rest = ["validate"], run_argv[1:]
    while rest:
        flag = rest.pop(0)
        if flag in RUN_ONLY:
            if flag != "--no-mqtt":
                rest.pop(0)
            continue
        argv.append(flag)
    return argv


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, sample_video, fetched_models, run_agents):
    """case name -> (run, exit code, fragments, validate run, folder)."""
    cases = CASES + RUN_TIME_CASES
    folders = [tmp_path_factory.mktemp(c.__name__) for c in cases]
    prepared = [bad_run_args(folder, sample_video, c) for folder, c in zip(folders, cases)]
    argvs = [argv for argv, _, _ in prepared]
    runs = run_agents(argvs + [validate_args(argv) for argv in argvs])
    return {case.__name__: (run, code, fragments, check, str(folder))
            for case, run, check, folder, (_, code, fragments)
            in zip(cases, runs, runs[len(cases):], folders, prepared)}


@pytest.mark.parametrize("case", CASES + RUN_TIME_CASES,
                         ids=[c.__name__ for c in CASES + RUN_TIME_CASES])
def test_bad_input_gives_one_clear_line_and_an_error_exit(bad_runs, case):
    # given one mistake on top of an otherwise working run, when the agent starts
    run, code, fragments = bad_runs[case.__name__][:3]
    # then it stops with the error kind's exit code and exactly one line on stderr, no traceback
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == code, run.stderr
    assert len(run.stderr_lines()) == 1, run.stderr
    line = run.stderr_lines()[0]
    assert line.startswith("edgeagent run: ")
    for fragment in fragments:
        assert fragment in line
    assert run.stdout == ""


def test_default_logging_still_ends_with_the_single_error_line(tmp_path, sample_video, run_agent):
    # given info logging (the default) and a corrupt model
    args, code, fragments = corrupt_onnx(tmp_path)
    run = run_agent(["run", "--no-mqtt", "--state-dir", str(tmp_path / "s"), "--source",
                     "file://" + sample_video] + args)
    # then the log lines come first, the error is one line, last, and there is no traceback
    errors = [line for line in run.stderr_lines() if line.startswith("edgeagent run: ")]
    assert run.returncode == code and "Traceback" not in run.stderr
    assert errors == [run.stderr_lines()[-1]] and fragments[1] in errors[0]


@pytest.mark.parametrize("case", CASES + RUN_TIME_CASES,
                         ids=[c.__name__ for c in CASES + RUN_TIME_CASES])
def test_validate_says_what_run_says_with_the_same_exit_code(bad_runs, case):
    run, code, _, check, _ = bad_runs[case.__name__]
    # when validate gets the same arguments, without opening a camera or running a frame
    assert "Traceback" not in check.stderr, check.stderr
    assert len(check.stderr_lines()) == 1 and check.stdout == "", check.stderr
    # then it stops with run's exit code and run's line
    assert check.returncode == run.returncode == code, (check.stderr, run.stderr)
    assert check.stderr_lines()[0].replace("edgeagent validate: ", "edgeagent run: ", 1) == \
        run.stderr_lines()[0]


TABLE_ROW = re.compile(r"^\| `(\w+)` \| (\d+) \| `(.+)` \|$")


def documented_rows():
    """case -> (exit code, line) from the bad-input table of docs/configuration.md."""
    with open(os.path.join(ROOT, "docs", "configuration.md")) as handle:
        matches = [TABLE_ROW.match(line.rstrip("\n")) for line in handle]
    return {m.group(1): (int(m.group(2)), m.group(3).replace("\\|", "|")) for m in matches if m}


def as_documented(line, folder, sample_video):
    """A real error line with this run's paths written as the table writes them."""
    line = line.replace("edgeagent run: ", "", 1).replace(folder, "<dir>")
    return line.replace(sample_video, "<video>").replace(MODELS, "<models>")


def test_docs_table_gives_every_case_its_exit_code_and_its_line(bad_runs, sample_video):
    rows = documented_rows()
    cases = [c.__name__ for c in CASES + RUN_TIME_CASES]
    assert sorted(rows) == sorted(cases), "docs/configuration.md bad-input table out of date"
    for name in cases:
        run, code, _, _, folder = bad_runs[name]
        doc_code, doc_line = rows[name]
        actual = as_documented(run.stderr_lines()[0], folder, sample_video)
        assert doc_code == code, name
        # a row ending in "..." documents the start of a line whose end comes from a library
        if doc_line.endswith("..."):
            assert actual.startswith(doc_line[:-3]), (name, actual)
        else:
            assert actual == doc_line, (name, actual)
