"""Texts split into what a speech model says one call at a time: whole texts, and text that arrives in pieces."""

import pytest

from ovserve.calculators.speech.sentences import SentenceSplitter, split_sentences


def test_sentences_end_at_their_marks_and_keep_closing_quotes():
    text = 'Hello there. How are you?  I am fine! "Quoted, too." (And this.)\tLast one without a mark'
    assert split_sentences(text) == ["Hello there.", "How are you?", "I am fine!", '"Quoted, too."', "(And this.)",
                                     "Last one without a mark"]


def test_abbreviations_initials_and_decimals_end_nothing():
    text = "Mr. Smith met Dr. J. Doe at 3.5 km, e.g. near the park. Then they left."
    assert split_sentences(text) == ["Mr. Smith met Dr. J. Doe at 3.5 km, e.g. near the park.", "Then they left."]


def test_line_breaks_and_cjk_marks_end_sentences():
    assert split_sentences("A title\nA line.\n\nA paragraph") == ["A title", "A line.", "A paragraph"]
    full_stop, exclamation, question = "\u3002", "\uff01", "\uff1f"  # CJK text puts no space after them
    text = f"你好{full_stop}再见{exclamation}好吗{question}"
    assert split_sentences(text) == [f"你好{full_stop}", f"再见{exclamation}", f"好吗{question}"]


def test_long_sentences_are_cut_at_soft_breaks_within_the_limit():
    text = "one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve."
    pieces = split_sentences(text, max_chars=30)
    assert all(len(piece) <= 30 for piece in pieces) and len(pieces) > 2
    assert " ".join(pieces) == text
    unbroken = "x" * 100
    assert split_sentences(unbroken, max_chars=40) == ["x" * 40, "x" * 40, "x" * 20]


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_blank_text_says_nothing(text):
    assert split_sentences(text) == []


def test_text_in_pieces_gives_each_sentence_once_it_is_complete():
    splitter = SentenceSplitter()
    assert splitter.add("Hello the") == []
    assert splitter.add("re.") == []  # the mark is seen, but not yet what follows it
    assert splitter.add(" How") == ["Hello there."]
    assert splitter.add(" are you? I") == ["How are you?"]
    assert splitter.add(" am") == []
    assert splitter.flush() == ["I am"]
    assert splitter.flush() == []


def test_text_in_pieces_splits_as_the_whole_text_does():
    text = "First sentence here. Second one, a bit longer! Third? Mr. Fourth ends without a mark"
    pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
    assert split_sentences(pieces) == split_sentences(text)


def test_text_without_an_end_in_sight_is_said_once_it_reaches_the_limit():
    splitter = SentenceSplitter(max_chars=20)
    said = splitter.add("word " * 10)
    assert said and all(len(piece) <= 20 for piece in said)
    assert " ".join(said + splitter.flush()) == ("word " * 10).strip()
