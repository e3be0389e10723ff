"""The pipeline's stages, one module each (``ncsn/stages/<name>.py``, the command ``ncsn <name>``).

``dvc.yaml`` defines their graph; :data:`STAGES` names them in the order the command line lists them.
"""

STAGES = ("prepare", "classifier", "train", "sample", "evaluate", "inpaint", "figures", "report")
