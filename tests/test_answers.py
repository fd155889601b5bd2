import pytest

from robustft.answers import (
    answer_char_span,
    answers_match,
    canonical_number,
    extract_answer,
    format_options,
    letters,
    normalize_label,
    normalize_text,
    parse_number,
)

OPTIONS = ["red", "green", "blue", "a plant cell"]


def test_letters():
    assert letters(0) == []
    assert letters(4) == ["A", "B", "C", "D"]
    assert letters(26)[-1] == "Z"
    with pytest.raises(ValueError, match="at most 26"):
        letters(27)


def test_format_options():
    assert format_options(["first", "second"]) == "A. first\nB. second"
    assert format_options([]) == ""


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Answer: B", "B"),
        ("answer: c", "C"),
        ("ANSWER:D", "D"),
        ("**Answer:** B", "B"),
        ("**Answer**: C", "C"),
        ("Answer: **B**", "B"),
        ("Answer: (B)", "B"),
        ("Answer: [C]", "C"),
        ("Answer: B.", "B"),
        ("Answer: B) green", "B"),
        ("Answer: C. blue", "C"),
        ("Answer: B - green", "B"),
        ("Answer: B because green is right", "B"),
        ("Final answer: D", "D"),
        ("Final Answer: Option C", "C"),
        ("Answer: \\boxed{B}", "B"),
        ("Answer:\n\n**C**", "C"),
        ("Let me think. Answer: A\nWait, that is wrong.\nAnswer: C", "C"),
        ("Reasoning...\nAnswer: b) green\n", "B"),
    ],
)
def test_extract_mc_marker_forms(text, expected):
    assert extract_answer(text, "multiple_choice", OPTIONS) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Answer: green", "B"),
        ("Answer: Blue.", "C"),
        ("Answer: A plant cell", "D"),  # option text wins over reading "A" as a letter
        ("Answer: **red**", "A"),
    ],
)
def test_extract_mc_option_text_maps_to_letter(text, expected):
    assert extract_answer(text, "multiple_choice", OPTIONS) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is B.", "B"),
        ("so the correct answer is (C)", "C"),
        ("I think the answer is blue", "C"),
        ("B", "B"),
        ("b.", "B"),
        ("  (D)  ", "D"),
        ("$\\boxed{A}$", "A"),
    ],
)
def test_extract_mc_fallbacks(text, expected):
    assert extract_answer(text, "multiple_choice", OPTIONS) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Because green absorbs less light, it reflects more.",  # never the first character
        "A cell is the basic unit of life.",
        "Answer: E",  # out of range for four options
        "Answer: Both of them",
        "Answer: I think it is B",
        "Answer: purple",
        "Answer: B\nMore thought... Answer:",  # last marker is empty: truncated, re-ask
        "Bananas",
    ],
)
def test_extract_mc_unusable_is_none(text):
    assert extract_answer(text, "multiple_choice", OPTIONS) is None


def test_extract_mc_without_options_accepts_any_letter():
    assert extract_answer("Answer: F", "multiple_choice") == "F"
    assert extract_answer("Answer: F", "multiple_choice", ["x", "y"]) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Answer: 42", "42"),
        ("Answer: 1,234.5", "1234.5"),
        ("Answer: -3", "-3"),
        ("Answer: \u22123", "-3"),
        ("Answer: 50%", "50"),
        ("Answer: $12", "12"),
        ("Answer: $1,234.50 in total", "1234.5"),
        ("Answer: -$7", "-7"),
        ("Answer: 3/4", "0.75"),
        ("Answer: .5", "0.5"),
        ("Answer: 2.000", "2"),
        ("Answer: x = 5 apples", "5"),
        ("**Answer:** 18", "18"),
        ("Answer: \\boxed{17}", "17"),
        ("so the answer is 1,000,000.", "1000000"),
        ("...\\boxed{256}", "256"),
        ("  42.  ", "42"),
        ("Answer: 5\nI double-check: 5 + 0 = 5.\nAnswer: 6", "6"),
    ],
)
def test_extract_numeric(text, expected):
    assert extract_answer(text, "numeric") == expected


@pytest.mark.parametrize(
    "text",
    ["Answer: none", "Answer: __import__('os').system('echo hi')", "I have no idea", "Answer: 1/0", "2+2"],
)
def test_extract_numeric_unusable_is_none(text):
    assert extract_answer(text, "numeric") is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Answer: Paris", "Paris"),
        ("reasoning\n**Answer:** **Paris**.\nThat is all.", "Paris."),
        ("Answer: the Eiffel Tower  \n", "the Eiffel Tower"),
        ("The answer is Marie Curie", "Marie Curie"),
    ],
)
def test_extract_text(text, expected):
    assert extract_answer(text, "text") == expected


def test_extract_text_without_marker_is_none():
    assert extract_answer("Paris is lovely in spring.", "text") is None


def test_extract_unknown_task_raises():
    with pytest.raises(ValueError, match="unknown task"):
        extract_answer("Answer: B", "essay")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Reasoning.\nAnswer: B", "B"),
        ("**Answer:** **C**\n", "C"),
        ("Answer: A\nthen\nAnswer:  42 apples  \nbye", "42 apples"),
        ("Answer:\n  D\n", "D"),
        ("the answer is (C)", "(C)"),
        ("B", "B"),
    ],
)
def test_answer_char_span(text, expected):
    span = answer_char_span(text)
    assert span is not None
    assert text[span[0]:span[1]] == expected


@pytest.mark.parametrize("text", ["", "Answer:", "Line one\nline two with no marker"])
def test_answer_char_span_none(text):
    assert answer_char_span(text) is None


@pytest.mark.parametrize(
    "pred, label, task, expected",
    [
        ("B", "B", "multiple_choice", True),
        ("b", "B", "multiple_choice", True),
        ("A", "B", "multiple_choice", False),
        (None, "B", "multiple_choice", False),
        ("1234.5", "1,234.5", "numeric", True),
        ("100", "100.9", "numeric", False),  # a whole number compares exactly
        ("100.1", "100.9", "numeric", True),  # neither whole: within 1 %
        ("100", "102", "numeric", False),
        ("125", "126", "numeric", False),  # an off-by-one count is a different answer
        ("126", "126.0", "numeric", True),
        ("0", "0", "numeric", True),
        ("0", "0.0000000001", "numeric", False),
        ("0", "0.001", "numeric", False),
        ("50", "50%", "numeric", True),
        ("abc", "5", "numeric", False),
        (None, "5", "numeric", False),
        ("Paris", "paris", "text", True),
        ("The city of Paris.", "Paris", "text", True),
        ("Paris", "Paris, France", "text", True),
        ("Paris", "Parisian", "text", False),  # contains on word boundaries only
        ("London", "Paris", "text", False),
        ("", "Paris", "text", False),
        ("the", "Paris", "text", False),  # normalises to empty
        ("an apple", "Apple", "text", True),
        (None, "Paris", "text", False),
    ],
)
def test_answers_match(pred, label, task, expected):
    assert answers_match(pred, label, task) is expected


def test_integers_are_exact_whatever_the_tolerance():
    # the issue's measurement: labels off by one from the experts' answers were kept as clean
    assert not any(answers_match(str(n + 1), str(n), "numeric", tolerance=0.5) for n in range(100, 140))
    assert answers_match("12345678901234567890", "12,345,678,901,234,567,890", "numeric")


def test_answers_match_tolerance():
    assert answers_match("1.05", "1.0001", "numeric", tolerance=0.1)
    assert not answers_match("1.05", "1.0001", "numeric", tolerance=0.01)


def test_normalize_text():
    assert normalize_text("  The  Quick, brown FOX! ") == "quick brown fox"
    assert normalize_text("An") == ""


@pytest.mark.parametrize(
    "text, expected",
    [
        ("42", 42.0),
        ("-3", -3.0),
        ("+2.5", 2.5),
        ("1,234.5", 1234.5),
        ("1,234,567", 1234567.0),
        ("50%", 50.0),
        ("$12", 12.0),
        ("-$12", -12.0),
        ("3/4", 0.75),
        (" 7 ", 7.0),
        ("1,23", None),
        ("12,3456", None),
        ("1/0", None),
        ("", None),
        ("abc", None),
        ("2+2", None),
        ("1e5", None),
        ("__import__('os')", None),
        ("5 apples", None),
    ],
)
def test_parse_number_is_strict(text, expected):
    assert parse_number(text) == expected


def test_canonical_number():
    assert canonical_number("1,234.50") == "1234.5"
    assert canonical_number("-0") == "0"
    assert canonical_number("100") == "100"
    assert canonical_number("12345678901234567890") == "12345678901234567890"
    assert canonical_number("nope") is None


@pytest.mark.parametrize(
    "label, options, expected",
    [
        ("B", ["x", "y"], "B"),
        ("b", ["x", "y"], "B"),
        (" (A) ", ["x", "y"], "A"),
        ("B.", ["x", "y"], "B"),
        ("y", ["x", "y"], "B"),
        ("  Neutral ", ["negative", "neutral", "positive"], "B"),
        ("B", ["A", "B"], "B"),  # a letter wins over an option whose text is a letter
    ],
)
def test_normalize_label_mc(label, options, expected):
    assert normalize_label(label, "multiple_choice", options) == expected


@pytest.mark.parametrize("label", ["C", "purple", "", "AB"])
def test_normalize_label_mc_rejects(label):
    with pytest.raises(ValueError) as info:
        normalize_label(label, "multiple_choice", ["x", "y"])
    assert "A-B" in str(info.value) or "empty" in str(info.value)


def test_normalize_label_numeric_and_text():
    assert normalize_label("1,234.0", "numeric", None) == "1234"
    assert normalize_label(" 3/4 ", "numeric", None) == "0.75"
    with pytest.raises(ValueError, match="not a number"):
        normalize_label("ten", "numeric", None)
    assert normalize_label("  Paris ", "text", None) == "Paris"
    with pytest.raises(ValueError, match="empty"):
        normalize_label("   ", "text", None)


@pytest.mark.parametrize("system, expected", [
    ("Answer with just the name.", True), ("Reply only with the number", True), ("No explanation.", True),
    ("Give the letter and nothing else", True), ("You are a helpful assistant.", False),
    ("Explain your reasoning, then answer.", False), ("", False)])
def test_asks_for_bare_answer(system, expected):
    from robustft.answers import asks_for_bare_answer

    assert asks_for_bare_answer(system) is expected


def test_bare_answer_reads_a_reply_that_is_only_the_answer():
    from robustft.answers import bare_answer

    assert bare_answer("Paris", "text") == "Paris" and bare_answer("Paris.", "text") == "Paris"
    assert bare_answer("Answer: Rome", "text") == "Rome"  # the marker still wins
    assert bare_answer("Some thought.\nParis", "text") is None  # several lines: not a bare answer
    assert bare_answer("x" * 300, "text") is None and bare_answer("", "text") is None
    assert bare_answer("B", "multiple_choice", ["a", "b"]) == "B"
