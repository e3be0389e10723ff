"""Score-matching objectives: per-example losses, reduced by the caller."""

from ncsn.core.losses.dsm import dsm_loss, dsm_loss_at
from ncsn.core.losses.ssm import annealed_ssm_loss, ssm_loss

__all__ = ["dsm_loss", "dsm_loss_at", "ssm_loss", "annealed_ssm_loss"]
