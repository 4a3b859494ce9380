"""Small calculators and resources the framework tests wire into graphs."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from ovserve import Calculator, CalculatorContext, Input, Output, Resource, ResourceContext, SideInput, SideOutput
from ovserve.framework.registry import Registry


class Upper(Calculator):
    """Upper-cases text."""

    TEXT = Input(str)
    UPPER = Output(str)

    def process(self, ctx: CalculatorContext) -> None:
        ctx.send(self.UPPER, ctx.value(self.TEXT).upper())


class Length(Calculator):
    """The length of each text."""

    TEXT = Input(str)
    LENGTH = Output(int)

    def process(self, ctx: CalculatorContext) -> None:
        ctx.send(self.LENGTH, len(ctx.value(self.TEXT)))


class Double(Calculator):
    """Doubles numbers."""

    NUMBER = Input(int)
    DOUBLED = Output(int)

    def process(self, ctx: CalculatorContext) -> None:
        ctx.send(self.DOUBLED, 2 * ctx.value(self.NUMBER))


class Pair(Calculator):
    """Pairs the LEFT and RIGHT packets of each timestamp; a missing one is None."""

    LEFT = Input(str)
    RIGHT = Input(str, optional=True)
    PAIR = Output(tuple)

    def process(self, ctx: CalculatorContext) -> None:
        ctx.send(self.PAIR, (ctx.value(self.LEFT), ctx.value(self.RIGHT)))


class Repeat(Calculator):
    """Streams: sends each text COUNT times (async, awaiting each send)."""

    TEXT = Input(str)
    COPIES = Output(str)

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int = Field(3, ge=1)

    async def process(self, ctx: CalculatorContext) -> None:
        for _ in range(ctx.options.count):
            await ctx.send(self.COPIES, ctx.value(self.TEXT))


class Greeting:
    """A shared 'model': what a resource provides."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls = 0


class GreetingModel(Resource):
    """Builds the shared Greeting once per graph load."""

    MODEL = SideOutput(Greeting)
    opened = 0
    closed = 0

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        word: str = "hello"

    def open(self, ctx: ResourceContext) -> None:
        type(self).opened += 1
        ctx.set(self.MODEL, Greeting(ctx.options.word))

    def close(self) -> None:
        type(self).closed += 1


class Greet(Calculator):
    """Greets each name with the shared model's word; yields to the loop in between to interleave runs."""

    NAME = Input(str)
    MODEL = SideInput(Greeting)
    GREETING = Output(str)

    async def process(self, ctx: CalculatorContext) -> None:
        model: Greeting = ctx.side["MODEL"]
        model.calls += 1
        await asyncio.sleep(0)
        await ctx.send(self.GREETING, f"{model.word} {ctx.value(self.NAME)}")


def sample_registry() -> Registry:
    registry = Registry()
    for target in (Upper, Length, Double, Pair, Repeat, GreetingModel, Greet):
        registry.add(target, "tests")
    registry.load_builtins()
    return registry
