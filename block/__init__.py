"""Edge Impulse side of the learning block: reading EI's data directory and the block's CLI arguments."""
