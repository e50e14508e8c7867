// Fast failure on bad paths: every file a run will read and every folder it will
// write, checked before anything large is allocated or initialised.
#pragma once
#include "deck/deck.h"

namespace temper {

// The run phase's data files (sft: data.train_files or sft.stage_files, data.eval_file;
// rl: rl.prompts_file, rl.eval_file; eval: eval.file) readable, data.tokenizer and
// model.init present (hf:DIR with its config.json), a checkpoint.resume path present,
// run.output_dir and checkpoint.dir created and writable. Throws naming the deck key
// and the path. One process calls it (rank 0), the others hear its verdict.
void check_run_inputs(const Deck& deck);

}  // namespace temper
