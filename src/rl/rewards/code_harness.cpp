// The Python harness of test-code rewards (see code_harness.h).
#include "rl/rewards/code_harness.h"

#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

namespace temper {

const std::string& code_harness_source() {
  static const std::string src = R"PY(import json, os, sys, types


def _main():
    nonce = sys.stdin.readline().strip()
    chan = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")

    def report(line):
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except BaseException:
                pass
        chan.write("\n" + nonce + " " + line + "\n")
        chan.flush()

    with open("tests.json", encoding="utf-8") as f:
        spec = json.load(f)
    for name in ("tests.json", "harness.py"):
        try:
            os.remove(name)
        except OSError:
            pass
    with open("solution.py", encoding="utf-8", errors="replace") as f:
        program = f.read()
    mod = types.ModuleType("solution")
    mod.__file__ = os.path.abspath("solution.py")
    sys.modules["solution"] = mod

    def run(src, name):
        try:
            exec(compile(src, name, "exec"), mod.__dict__)
            return None
        except BaseException as e:
            try:
                msg = type(e).__name__ + ": " + str(e)
            except BaseException:
                msg = "exception"
            return " ".join(msg.split())[:200]

    err = run(program, "solution.py")
    if err is None and spec.get("setup"):
        err = run(spec["setup"], "setup")
    if err is not None:
        report("program " + err)
    else:
        for i, t in enumerate(spec["tests"]):
            e = run(t, "test_%d" % i)
            report("test %d %s" % (i, "ok" if e is None else "fail " + e))
    report("done")


_main()
os._exit(0)
)PY";
  return src;
}

std::string code_harness_spec(const CodeTestCode& tc) {
  nlohmann::json j = {{"setup", tc.setup}, {"tests", tc.tests}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string code_harness_program(const CodeTestCode& tc, const std::string& code) {
  if (tc.prefix.empty()) return code;
  return tc.prefix + (tc.prefix.back() == '\n' ? "" : "\n") + code;
}

HarnessOutcome parse_code_harness_output(const std::string& out, const std::string& nonce, size_t n_tests) {
  HarnessOutcome h;
  h.passed.assign(n_tests, false);
  h.failure.assign(n_tests, "");
  const std::string tag = nonce + " ";
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (nonce.empty() || line.compare(0, tag.size(), tag) != 0) continue;
    std::string rest = line.substr(tag.size());
    if (rest == "done") {
      h.done = true;
    } else if (rest.compare(0, 8, "program ") == 0) {
      h.program_error = rest.substr(8);
    } else if (rest.compare(0, 5, "test ") == 0) {
      std::istringstream f(rest.substr(5));
      size_t i = 0;
      std::string what;
      if (!(f >> i >> what) || i >= n_tests) continue;
      if (what == "ok") {
        h.passed[i] = true;
      } else {
        std::string reason;
        std::getline(f, reason);
        h.failure[i] = reason.empty() ? what : reason.substr(1);
      }
    }
  }
  return h;
}

std::string code_harness_nonce() {
  std::random_device rd;
  std::ostringstream s;
  s << std::hex;
  for (int i = 0; i < 4; ++i) {
    uint32_t v = rd();
    for (int b = 0; b < 8; ++b) s << ((v >> (4 * b)) & 0xF);
  }
  return s.str();
}

}  // namespace temper
