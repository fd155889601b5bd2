import math

import pytest

from robustft.backends.base import Generation
from robustft.entropy import answer_nll, mean_nll, response_score, select_lowest, topk_entropy


def test_mean_nll_is_the_papers_mean_negative_logprob():
    assert mean_nll([-0.5, -1.5, 0.0]) == pytest.approx(2.0 / 3)
    assert mean_nll([]) is None and mean_nll(None) is None


def test_answer_nll_scores_only_the_answer_tokens():
    tokens = ["I", " think", " so", ".\n", "Answer", ":", " B"]
    logprobs = [-2.0, -2.0, -2.0, -2.0, -0.1, -0.1, -0.3]
    text = "".join(tokens)
    assert answer_nll(text, tokens, logprobs) == pytest.approx(0.3)
    assert mean_nll(logprobs) == pytest.approx(8.5 / 7)


def test_answer_nll_falls_back_to_the_mean_when_tokens_do_not_spell_the_text():
    assert answer_nll("Answer: B", ["x", "y"], [-1.0, -3.0]) == pytest.approx(2.0)
    assert answer_nll("no marker here", ["no marker here"], [-1.0]) == pytest.approx(1.0)


def test_response_score_dispatches_and_rejects_unknown_methods():
    tokens = ["Hm", ".\n", "Answer", ":", " A"]
    gen = Generation(text="".join(tokens), tokens=tokens, token_logprobs=[-1.0, -3.0, -0.2, -0.2, -0.6],
                     token_entropies=[1.0, 2.0, 0.5, 0.5, 1.5])
    assert response_score("mean_nll", gen) == pytest.approx(5.0 / 5)
    assert response_score("answer_nll", gen) == pytest.approx(0.6)
    assert response_score("entropy", gen) == pytest.approx(5.5 / 5)
    with pytest.raises(ValueError, match="unknown score method 'perplexity'"):
        response_score("perplexity", gen)


def test_scores_are_none_when_the_backend_gave_nothing_to_score():
    bare = Generation(text="Answer: A")
    assert response_score("mean_nll", bare) is None and response_score("answer_nll", bare) is None
    # logprobs without top-k alternatives: no entropy, rather than an entropy of one token
    assert response_score("entropy", Generation(text="Answer: A", token_logprobs=[-0.1], tokens=["A"])) is None


def test_topk_entropy_when_the_top_k_hold_all_the_mass():
    # p = 1/2, 1/4, 1/4: H = 0.5 ln 2 + 2 * 0.25 ln 4 = 1.5 ln 2
    assert topk_entropy([math.log(0.5), math.log(0.25), math.log(0.25)]) == pytest.approx(1.5 * math.log(2))
    assert topk_entropy([0.0]) == 0.0  # a certain token
    assert topk_entropy([0.0, -9999.0]) == 0.0  # vLLM's floor for -inf: no mass


def test_topk_entropy_counts_the_mass_outside_the_top_k_as_one_outcome():
    # p = 0.5, 0.3 listed; the remaining 0.2 is one more outcome
    expected = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    assert expected == pytest.approx(1.0296530140645737)
    assert topk_entropy([math.log(0.5), math.log(0.3)]) == pytest.approx(expected)
    # only the sampled token, p = 0.9: the binary entropy of 0.9 / 0.1
    assert topk_entropy([math.log(0.9)]) == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))


def test_topk_entropy_is_a_lower_bound_of_the_full_distributions_entropy():
    import random

    rng = random.Random(5)
    for _ in range(200):
        weights = [rng.random() ** 3 for _ in range(30)]
        total = sum(weights)
        probs = sorted((w / total for w in weights), reverse=True)
        full = -sum(p * math.log(p) for p in probs)
        for k in (1, 3, 5, 20):
            assert topk_entropy(math.log(p) for p in probs[:k]) <= full + 1e-12
        assert topk_entropy(math.log(p) for p in probs) == pytest.approx(full)


def test_select_lowest_keeps_floor_beta_n_lowest_in_input_order():
    scores = {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.3, "e": 0.7}
    kept, threshold = select_lowest(scores, 0.5)
    assert kept == ["b", "d"] and threshold == pytest.approx(0.3)
    kept, _ = select_lowest(scores, 1.0)
    assert kept == list(scores)


def test_select_lowest_matches_the_papers_strict_median_rule_on_distinct_scores():
    import random

    rng = random.Random(3)
    for n in range(1, 40):
        scores = {str(i): rng.random() for i in range(n)}
        values = sorted(scores.values())
        median = (values[(n - 1) // 2] + values[n // 2]) / 2
        paper = {k for k, v in scores.items() if v < median}
        kept, _ = select_lowest(scores, 0.5)
        assert set(kept) == paper


def test_select_lowest_ranks_missing_scores_last_and_breaks_ties_by_order():
    kept, threshold = select_lowest({"a": None, "b": 0.2, "c": 0.2, "d": None}, 0.5)
    assert kept == ["b", "c"] and threshold == pytest.approx(0.2)
    kept, threshold = select_lowest({"a": None, "b": None}, 0.5)
    assert kept == ["a"] and threshold is None


@pytest.mark.parametrize("beta", [0.0, -0.1, 1.5])
def test_select_lowest_rejects_beta_outside_0_1(beta):
    with pytest.raises(ValueError):
        select_lowest({"a": 1.0}, beta)


def test_empty_selection():
    assert select_lowest({}, 0.5) == ([], None)
    assert math.isclose(mean_nll([-2.0]), 2.0)
