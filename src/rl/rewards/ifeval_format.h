// Format counters of the official IFEval checkers on decoded text (ifeval_format.cpp).
#pragma once
#include <string>
#include <vector>

namespace temper::ifeval {

size_t count_bullets(const std::u32string& t);       // "* item" / "- item" lines
size_t count_highlights(const std::u32string& t);    // *text* and **text** spans
size_t count_placeholders(const std::u32string& t);  // [name]
bool has_title(const std::u32string& t);             // <<title>>
size_t count_sections(const std::u32string& t, const std::u32string& splitter);  // "SECTION 1"
long count_star_paragraphs(const std::u32string& t);  // "***" dividers; -1: an empty paragraph between
std::vector<std::u32string> split(const std::u32string& t, const std::u32string& sep);

}  // namespace temper::ifeval
