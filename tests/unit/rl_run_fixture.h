// The small RL starting point shared by the RL-on-a-mesh and RL-reshard tests: a tiny
// model SFT-trained for 40 steps on generated tasks, and prompts it passes now and then.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>

#include "unit/run_util.h"

namespace temper_test {

// Makes a fresh folder `name` holding data/ (generate-tasks), sft/checkpoints (the
// trained model, for --model.init) and prompts.jsonl: instruction-following prompts the
// barely trained model passes now and then (letter counts of its output), so groups carry
// signal and the model moves, and a second task ("count") for the mix.
inline std::filesystem::path small_rl_fixture(const std::string& name) {
  const std::filesystem::path d = fresh_dir(name);
  auto r = run_cmd(temper_bin() + " generate-tasks --out " + (d / "data").string() + " --seed 5 --train 200 --eval 8");
  EXPECT_EQ(r.status, 0) << r.output;
  r = run_cmd("OMP_NUM_THREADS=1 " + temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) +
              "/input/quickstart.deck --run.output_dir=" + (d / "sft").string() +
              " --data.train_files=" + (d / "data" / "sft_train.jsonl").string() +
              " --data.eval_file= --model.d_model=32 --model.n_layers=2 --model.n_heads=4 --model.n_kv_heads=2"
              " --model.head_dim=8 --model.ffn_dim=64 --data.seq_len=256 --data.micro_batch=2 --sft.steps=40"
              " --sft.lr=3e-3 --sft.warmup_steps=2 --checkpoint.every=0");
  EXPECT_EQ(r.status, 0) << r.output;
  std::string lines;
  for (int i = 0; i < 12; ++i)
    lines += "{\"messages\":[{\"role\":\"user\",\"content\":\"Write about " + std::to_string(i) +
             "\"}],\"task\":\"if\",\"constraints\":{\"type\":\"letter_frequency\",\"letter\":\"" +
             std::string(1, "aeiou"[i % 5]) + "\",\"n\":2}}\n";
  for (const char* w : {"banana", "apple", "letter", "mississippi"})
    lines += std::string("{\"messages\":[{\"role\":\"user\",\"content\":\"How many 's' in '") + w +
             "'?\"}],\"task\":\"count\",\"answer\":\"" + std::to_string(std::count(w, w + std::strlen(w), 's')) +
             "\"}\n";
  write_file(d / "prompts.jsonl", lines);
  return d;
}

}  // namespace temper_test
