/* checkpoint.h: Estimator-style checkpoint directories, as tf.train.Saver (V2) leaves them.
 *
 *   <dir>/model.ckpt-<step>.index                  tensor bundle (io/tensor_bundle.h)
 *   <dir>/model.ckpt-<step>.data-00000-of-00001
 *   <dir>/checkpoint                               text CheckpointState:
 *       model_checkpoint_path: "model.ckpt-20"
 *       all_model_checkpoint_paths: "model.ckpt-10"      (oldest first, newest last)
 *       all_model_checkpoint_paths: "model.ckpt-20"
 * Paths in `checkpoint` are relative (Estimator's save_relative_paths=True), so a job dir can be
 * moved or copied. tf.train.latest_checkpoint / load_checkpoint / list_variables read these.
 *
 * Crash safety: data file, then index, each under a temporary name and renamed; the `checkpoint`
 * file is rewritten (temp + rename) last, and only then are checkpoints beyond keep_max deleted.
 * A crash at any point leaves the previous checkpoint complete and findable.
 */
#ifndef IO_CHECKPOINT_H
#define IO_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "io/tf_tensor.h"

/* The prefix of step's checkpoint in dir, "<dir>/model.ckpt-<step>", into out[cap]. */
void checkpoint_prefix(char *out, size_t cap, const char *dir, int64_t step);

/* Saves tensors as <dir>/model.ckpt-<step> (dir is created if missing), records it as the newest
 * in <dir>/checkpoint and deletes the oldest ones so that at most keep_max remain (keep_max <= 0:
 * keep all). Saving a step that already exists replaces it. The prefix written
 * ("<dir>/model.ckpt-<step>") goes to prefix_out when it is not NULL.
 * The caller names the tensors (TF variable names) and must include "global_step" (int64 scalar)
 * for TF's Estimator to resume from it. 0 ok, -1 error (message in err). */
int checkpoint_save(const char *dir, int64_t step, const TfTensor *tensors, int n, int keep_max,
                    char *prefix_out, size_t prefix_cap, char *err, size_t errlen);

/* Writes <prefix>.meta (a serialized MetaGraphDef, e.g. from savedmodel_encode_meta_graph)
 * atomically, as tf.train.Saver does beside each checkpoint; tf.train.import_meta_graph reads it.
 * Optional: the checkpoint is complete without it (deleted with it by keep-max). 0 ok, -1 error. */
int checkpoint_write_meta(const char *prefix, const void *meta_graph, size_t n, char *err,
                          size_t errlen);

/* The checkpoint a job in dir resumes from, as TF's latest_checkpoint picks it: the one the
 * state file `checkpoint` names in model_checkpoint_path (which a user may edit to roll back)
 * when it is complete (its index parses, its data files are long enough). Otherwise the newest
 * complete model.ckpt-<step> there, with a warning (in warning; "" when none) naming what was
 * passed over and why: a named checkpoint missing or cut short (a partial copy, a checkpoint sync
 * cut off), a state file that does not parse, a newer incomplete index. Returns 1 with its prefix
 * and step (from its name); 0 for a fresh start: no checkpoint file there (or no dir; with a
 * warning when the state file names a vanished one, where TF starts afresh too); -1 with err when
 * dir cannot be read, or checkpoint indexes are there but none is complete: never a fresh start
 * over them (TF fails on a cut checkpoint too). (A data file without its index, which a save
 * killed before its index leaves, is no checkpoint.) A save killed at any point leaves the state file
 * naming a complete checkpoint: it is written after the checkpoint's files. */
int checkpoint_latest(const char *dir, char *prefix_out, size_t prefix_cap, int64_t *step,
                      char *warning, size_t warnlen, char *err, size_t errlen);

/* The checkpoint prefixes listed in <dir>/checkpoint, oldest first (as written there, relative
 * paths joined to dir). *paths is malloc'd (free with checkpoint_paths_free). Returns the count
 * (0 when the file is missing), -1 on a malformed file. */
int checkpoint_state_read(const char *dir, char ***paths, char *err, size_t errlen);
void checkpoint_paths_free(char **paths, int n);

#endif
