"""The run machinery of batch QA and the evaluator: resumable, sharded JSONL runs over a pipeline.

One job per module, each importing only the ones above it in this list:

* :mod:`~garvideo.runs.settings` — the settings that shape a run's answers, recorded beside every output
  (``<stem>.settings.json``) and compared on rerun and merge;
* :mod:`~garvideo.runs.lines` — JSONL lines: the exact bytes of a record, reading (a cut-off last line
  dropped), atomic rewrites, the key an id is compared by;
* :mod:`~garvideo.runs.locking` — one writer per output file (:func:`~garvideo.runs.locking.output_lock`,
  :class:`~garvideo.runs.locking.OutputLocked`);
* :mod:`~garvideo.runs.shards` — :class:`~garvideo.runs.shards.Shard` (``I/N`` or torchrun), part files and
  their ids files;
* :mod:`~garvideo.runs.outputs` — the checks made before any work (writable, not locked, resumable with
  these settings);
* :mod:`~garvideo.runs.merge` — joining the parts of a sharded run;
* :mod:`~garvideo.runs.records` — the answer / error fields of an output line, the timings;
* :mod:`~garvideo.runs.loop` — :func:`~garvideo.runs.loop.run_jsonl`, the resumable run loop;
* :mod:`~garvideo.runs.engine` — :class:`~garvideo.runs.engine.QuestionRunner`, clips prepared ahead in a
  background thread and questions answered in batches over the pipeline's public API (used by batch QA,
  the evaluator and the benchmarks);
* :mod:`~garvideo.runs.questions` and :mod:`~garvideo.runs.batch_qa` — batch QA: the questions file's
  schema, and answering one (:func:`~garvideo.runs.batch_qa.run_batch_qa`).

The package root imports nothing: ``import garvideo.runs.lines`` loads no model code.
"""
