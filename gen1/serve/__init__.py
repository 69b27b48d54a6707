"""``gen1 serve``: a web app for editing videos, on gradio.

Upload a clip, give a prompt and/or reference images, watch the structure preview follow the t_s slider, edit
(with real progress, cancellable), and download the result with its sound, the source | structure | edit
comparison and the ``gen1 edit`` command line that reproduces it.

* :mod:`gen1.serve.models` -- the models offered, by the names given at start-up;
* :mod:`gen1.serve.preview` -- the structure preview (depth estimated once, obscured at any t_s);
* :mod:`gen1.serve.service` -- what the page does, without the page (:func:`gen1.editing.run_edit` for edits);
* :mod:`gen1.serve.app` -- the gradio page and its wiring.

gradio is an optional dependency (``pip install "gen1[serve]"``); nothing here imports it until the app is built.
"""
