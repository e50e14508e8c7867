// Text measures of the official IFEval checkers (ifeval_text.cpp): words as nltk's
// RegexpTokenizer(r"\w+"), sentences as nltk's Punkt English model decides them (its
// rules for abbreviations, initials, numbers and ellipses, with temper's own word lists
// in place of the trained parameters), capitalised tokens of nltk.word_tokenize, and the
// language of a text (language_id.cpp).
#pragma once
#include <string>

namespace temper::ifeval {

size_t count_words(const std::string& text);      // runs of \w (Unicode letters, digits, _)
size_t count_sentences(const std::string& text);  // Punkt-like, see docs/rewards.md
size_t count_capital_words(const std::string& text);  // word_tokenize tokens with str.isupper()

// ISO 639-1 code of the text's language ("en", "hi", ...), "" when it has no letters to
// judge (the official checker then counts the instruction as followed). Throws
// temper::Error when libexttextcat's data files cannot be read.
std::string detect_language(const std::string& text);

}  // namespace temper::ifeval
