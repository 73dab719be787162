"""Ad-hoc commands (XEP-0050, also over chat) for the integration tests: a
kitchen that takes orders.

``order`` asks three forms: what and how many; then the dish's own form
(a pizza's or a salad's, chosen by the first answer); then where to deliver,
the contact pre-filled with the requester's address. ``menu`` answers at
once with a result table; ``orders`` lists the orders taken, for admins only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from empc import Handler
from empc.commands import Session, command
from empc.forms import (
    Boolean,
    Form,
    Integer,
    JidSingle,
    ListMulti,
    ListSingle,
    TextMulti,
    TextSingle,
)


class Order(Form):
    FORM_TYPE = "urn:example:kitchen:order"
    title = "Order a meal"
    dish = ListSingle("Dish", options=[("pizza", "Pizza"), ("salad", "Salad")], required=True)
    quantity = Integer("How many", required=True, minimum=1, maximum=10)


class Pizza(Form):
    FORM_TYPE = "urn:example:kitchen:pizza"
    title = "Your pizza"
    size = ListSingle("Size", options=["small", "large"], required=True)
    toppings = ListMulti("Toppings", options=["ham", "olives", "mushrooms"], min_values=1)
    cheese = Boolean("Extra cheese")


class Salad(Form):
    FORM_TYPE = "urn:example:kitchen:salad"
    title = "Your salad"
    dressing = ListSingle("Dressing", options=["vinaigrette", "yoghurt"], required=True)
    remarks = TextMulti("Remarks")


class Delivery(Form):
    FORM_TYPE = "urn:example:kitchen:delivery"
    title = "Delivery"
    address = TextSingle("Deliver to", required=True)
    contact = JidSingle("Who to call", required=True)


class Dish(Form):
    title = "Menu"
    dish = TextSingle("Dish")
    price = Integer("Price")
    vegetarian = Boolean("Vegetarian")


class Taken(Form):
    title = "Orders taken"
    number = Integer("Number")
    customer = JidSingle("Customer")
    summary = TextSingle("Order")


MENU = [
    Dish(dish="pizza", price=12, vegetarian=False),
    Dish(dish="salad", price=9, vegetarian=True),
]


def menu_table() -> etree._Element:
    """The menu as the ``menu`` command answers it."""
    return Dish.table(MENU)


class Kitchen(Handler):
    """Takes orders in memory; each completed order gets the next number."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.taken: list[Taken] = []

    @command("order", name="Order a meal", usage="<dish> <how many>")
    async def order(self, session: Session) -> str:
        order = await session.ask(Order)
        details: str
        if order.dish == "pizza":
            pizza = await session.ask(Pizza)
            cheese = ", extra cheese" if pizza.cheese else ""
            details = f"{pizza.size} pizza(s) with {', '.join(pizza.toppings)}{cheese}"
        else:
            salad = await session.ask(Salad)
            details = f"salad(s) with {salad.dressing} dressing"
        where = await session.ask(Delivery, {"contact": session.requester.bare}, final=True)
        # After the last form only: going back runs the command again.
        summary = f"{order.quantity} {details}, to {where.address}"
        number = len(self.taken) + 1
        self.taken.append(Taken(number=number, customer=session.requester.bare, summary=summary))
        return f"Order #{number}: {summary}."

    @command("menu", name="The menu")
    def menu(self, session: Session) -> etree._Element:
        return menu_table()

    @command("orders", name="Orders taken", allow=["list:admins"])
    def orders(self, session: Session) -> etree._Element:
        return Taken.table(self.taken)
