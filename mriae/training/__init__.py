"""Training the codec (``mriae train``): needs the ``[train]`` extra."""

from mriae.extras import require

require("train", "mriae train")
