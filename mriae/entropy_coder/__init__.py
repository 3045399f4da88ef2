"""The entropy coder of the network's latents (no torch): which table codes each symbol
(:mod:`~mriae.entropy_coder.context`) and the bitstream itself (:mod:`~mriae.entropy_coder.stream`)."""
