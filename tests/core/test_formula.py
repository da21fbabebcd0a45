"""The bandwidth formula against hand-computed figures, and its CLI."""

import pytest

from fedcomp import formula
from fedcomp.core.formula import Estimate, cohort_size, lesson_total_mb

PYTHIA_BYTES = 56_270_848


def test_lesson_exact_and_rounded():
    est = Estimate(PYTHIA_BYTES, PYTHIA_BYTES, num_clients=2, fraction_fit=1.0, num_rounds=1)
    assert est.total == 225_083_392
    assert lesson_total_mb(PYTHIA_BYTES, PYTHIA_BYTES, est) == 212  # floor(53.66) = 53; 53*2*2
    assert round(est.total / 2**20, 2) == 214.66
    assert round(est.total / 10**6, 2) == 225.08


def test_asymmetric_up_down():
    est = Estimate(bytes_down=1000, bytes_up=10, num_clients=4, fraction_fit=1.0, num_rounds=3)
    assert est.train_per_round == (1000 + 10) * 4
    assert est.total == 1010 * 4 * 3
    assert est.cohort_up_total == 10 * 4 * 3


def test_partial_participation_continuous_vs_integer_cohort():
    # 10 clients x 0.25 = 2.5 in the formula; Flower samples int(2.5) = 2
    est = Estimate(100, 100, num_clients=10, fraction_fit=0.25, num_rounds=2)
    assert est.total == 200 * 10 * 0.25 * 2 == 1000.0
    assert est.fit_cohort == 2
    assert est.cohort_total == 200 * 2 * 2 == 800
    # min clients lifts the cohort: max(3, int(10 * 0.1)) = 3
    assert cohort_size(10, 0.1, min_clients=3) == 3
    assert cohort_size(10, 0.0) == 0


def test_evaluation_traffic_is_its_own_line():
    est = Estimate(100, 50, num_clients=10, fraction_fit=0.5, num_rounds=2, fraction_evaluate=0.3)
    assert est.train_total == 150 * 10 * 0.5 * 2
    assert est.evaluate_total == 100 * 10 * 0.3 * 2
    assert est.total == est.train_total + est.evaluate_total
    # cohort: train 5, evaluate 3 clients per round; evaluation sends the model down only
    assert est.cohort_down_total == 100 * (5 + 3) * 2
    assert est.cohort_up_total == 50 * 5 * 2


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"fraction_fit": 0.0}, "federation.fraction_fit"),
        ({"fraction_fit": 1.5}, "federation.fraction_fit"),
        ({"num_rounds": -1}, "federation.num_rounds"),
        ({"num_clients": 0}, "federation.num_clients"),
        ({"fraction_evaluate": -0.1}, "federation.fraction_evaluate"),
        ({"bytes_down": -5}, "bytes_down"),
        ({"min_fit_clients": 5}, "federation.min_fit_clients"),
    ],
)
def test_bad_input_names_the_key(kwargs, key):
    args = {"bytes_down": 1, "bytes_up": 1, "num_clients": 2, "fraction_fit": 1.0, "num_rounds": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=key):
        Estimate(**args)


def test_cli_reproduces_the_lesson(capsys):
    assert formula.main(["--model-bytes", str(PYTHIA_BYTES)]) == 0
    out = capsys.readouterr().out
    assert "225,083,392 B = 214.66 MiB = 225.08 MB" in out
    assert "= 212 MB" in out


def test_cli_derives_pythia_size_from_the_task(capsys):
    assert formula.main(["--task", "pythia14m"]) == 0
    out = capsys.readouterr().out
    assert "56,270,848 B" in out and "14,067,712 values" in out
    assert "225,083,392 B" in out and "= 212 MB" in out


def test_cli_bad_numbers_exit_2(capsys):
    assert formula.main(["--model-bytes", "100", "--fraction-fit", "2"]) == 2
    assert "federation.fraction_fit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        formula.main(["--num-rounds", "abc"])
    assert exc.value.code == 2
