// Finding the final answer in a model's text (math_extract.cpp): boxes, prefixes
// and, for free-text evaluation, Math-Verify's anchors, math spans and numbers.
#pragma once
#include <optional>
#include <string>

namespace temper::mathx {

// The last \boxed{...} (or \fbox{...}) together with the boxes listed just before it
// ("\boxed{-2} and \boxed{1}" -> "-2, 1"). *found tells whether any box exists;
// nullopt with *found == true means the last box is truncated or empty.
// *end (when given) receives the position just past the last box.
std::optional<std::string> boxed_answer(const std::string& text, bool* found, size_t* end = nullptr);

}  // namespace temper::mathx
