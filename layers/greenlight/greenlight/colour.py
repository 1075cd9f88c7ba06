"""Blue and green: the two slots an app's Deployments live in.

The roles swap at every promotion: the *live* colour serves traffic, the other one is where the
next commit is deployed (the candidate, called "green" in the docs whatever its slot's name).
"""

from __future__ import annotations

from enum import StrEnum


class Colour(StrEnum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Colour:
        return Colour.GREEN if self is Colour.BLUE else Colour.BLUE
