// Input and output paths checked at start-up (see input_check.h).
#include "app/input_check.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace temper {

namespace fs = std::filesystem;

namespace {

std::string key_at(const Deck& d, const std::string& key) { return cat(key, " (", d.where(key), ")"); }

void readable_file(const Deck& d, const std::string& key, const std::string& path) {
  std::error_code ec;
  TEMPER_CHECK(!fs::is_directory(path, ec), key_at(d, key), ": '", path, "' is a directory, not a file");
  std::ifstream probe(path);
  TEMPER_CHECK(probe.good(), key_at(d, key), ": '", path, "' cannot be read: ", std::strerror(errno));
}

void present(const Deck& d, const std::string& key, const std::string& path) {
  std::error_code ec;
  TEMPER_CHECK(fs::exists(path, ec), key_at(d, key), ": '", path, "' does not exist");
}

void writable_folder(const Deck& d, const std::string& key, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  TEMPER_CHECK(!ec, key_at(d, key), ": cannot create the folder '", dir, "': ", ec.message());
  const fs::path probe = fs::path(dir) / ".temper_write_probe";
  std::FILE* f = std::fopen(probe.c_str(), "w");
  TEMPER_CHECK(f, key_at(d, key), ": '", dir, "' is not a writable folder: ", std::strerror(errno));
  std::fclose(f);
  fs::remove(probe, ec);
}

}  // namespace

void check_run_inputs(const Deck& d) {
  const std::string phase = d.get_string("run.phase");
  if (phase == "sft") {
    const std::string key = d.get_list("sft.stage_files").empty() ? "data.train_files" : "sft.stage_files";
    for (const auto& stage : sft_stages(d))
      for (const auto& f : stage.files) readable_file(d, key, f);
    if (!d.get_string("data.eval_file").empty()) readable_file(d, "data.eval_file", d.get_string("data.eval_file"));
  } else if (phase == "rl") {
    for (const char* key : {"rl.prompts_file", "rl.eval_file"})
      if (!d.get_string(key).empty()) readable_file(d, key, d.get_string(key));
  } else if (phase == "eval") {
    if (!d.get_string("eval.file").empty()) readable_file(d, "eval.file", d.get_string("eval.file"));
  }
  if (phase == "sft" || phase == "rl" || phase == "eval") {
    const std::string tok = d.get_string("data.tokenizer");
    if (tok != "byte") present(d, "data.tokenizer", tok.rfind("hf:", 0) == 0 ? tok.substr(3) : tok);
    const std::string init = d.get_string("model.init");
    if (init.rfind("hf:", 0) == 0) readable_file(d, "model.init", (fs::path(init.substr(3)) / "config.json").string());
    else if (init != "random") present(d, "model.init", init);
  }
  const std::string resume = d.get_string("checkpoint.resume");
  if (resume != "auto" && resume != "never") present(d, "checkpoint.resume", resume);
  const std::string out = d.get_string("run.output_dir");
  writable_folder(d, "run.output_dir", out);
  std::string ckpt = d.get_string("checkpoint.dir");
  if (ckpt.empty()) ckpt = (fs::path(out) / "checkpoints").string();
  writable_folder(d, "checkpoint.dir", ckpt);
}

}  // namespace temper
