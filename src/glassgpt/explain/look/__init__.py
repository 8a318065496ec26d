"""`glassgpt look`: the ideas of the explanations, measured on a trained model.

Three layers, each over the one below:

* `trace` captures one forward pass with hooks (the model has no visualisation code);
* `views` turns captures into the numbers of each view, as small dataclasses of plain values
  and numpy arrays (no printing, no drawing);
* `text` renders a view for the terminal, `draw` renders it as a PNG (matplotlib, headless).

`glassgpt.commands.look_cmd` is the command line over them.
"""
