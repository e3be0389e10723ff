"""``ncsn <stage> --help`` says what the stage does, reads and writes, and where its parameters live."""

from __future__ import annotations

import pytest

from ncsn.cli import main
from ncsn.stages import STAGES
from tests.helpers import REPO


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_help_names_its_inputs_outputs_and_parameters(stage: str, capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as done:
        main([stage, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "Writes: outputs/" in text and "in params.yaml" in text and "-S KEY=VALUE" in text
    assert len(text.splitlines()) > 8  # the stage's docstring, not the bare "-h" line


def test_the_train_help_lists_its_files_and_sections(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "Reads: outputs/prepare/train.pt" in text and "outputs/train/model.pt" in text
    assert "model.*, train.*" in text


def test_outside_a_checkout_the_help_points_to_dvc_yaml(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "see the 'evaluate' stage of dvc.yaml" in capsys.readouterr().out
