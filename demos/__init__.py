"""garvideo's demos: each runs on the synthetic sample clip by default, or on your clip with
``--video CLIP --mask MASK [--frame N]``.

* ``python -m garvideo.demos.sample_clip OUT`` — write the synthetic clip and its ground truth;
* ``python -m garvideo.demos.track_and_overlay`` — propagate masks, write an overlay video;
* ``python -m garvideo.demos.describe_clip --model M`` — describe an object, caption burned in;
* ``python -m garvideo.demos.relationship_question --model M`` — several objects, a question;
* ``python -m garvideo.demos.web --model M`` — the web demo (Gradio: ``pip install -e ".[demo]"`` in a clone).

They call the library only (:mod:`garvideo.trackers`, :mod:`garvideo.overlay`, :mod:`garvideo.pipeline`).
"""
