"""The one HTTP contract both variants of the orders service serve."""

from __future__ import annotations

import hmac
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from services.core.problems import PROBLEM_MEDIA_TYPE
from services.orders.errors import NotAuthorized, OrderNotFound, QuantityTooLarge, SaleNotFound
from services.orders.ports import FlashSale, OrderFlow, OrderReply, PlaceOrder
from services.orders.settings import OrdersSettings

Sku = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class FlashSaleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    stock: StrictInt = Field(ge=0, le=100_000_000)
    price_cents: StrictInt = Field(ge=0, le=100_000_000)


class FlashSalePublic(BaseModel):
    sku: str
    stock: int
    price_cents: int


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: StrictInt = Field(ge=1)
    customer_id: Annotated[StrictStr, Field(min_length=1, max_length=128)]


class OrderPublic(BaseModel):
    order_id: UUID
    status: str


class OrderDetail(BaseModel):
    order_id: UUID
    sku: str
    customer_id: str
    quantity: int
    amount_cents: int
    status: str


class InventoryPublic(BaseModel):
    sku: str
    stock: int
    available: int


# async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hand-off
# (and a wait for one of the pool's 40 threads under a spike) for what is an attribute read.
async def get_flow(request: Request) -> OrderFlow:
    flow: OrderFlow = request.app.state.flow
    return flow


async def get_settings(request: Request) -> OrdersSettings:
    settings: OrdersSettings = request.app.state.settings
    return settings


FlowDep = Annotated[OrderFlow, Depends(get_flow)]
SettingsDep = Annotated[OrdersSettings, Depends(get_settings)]


async def require_admin(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    scheme, _, given = (authorization or "").partition(" ")
    if not token or scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise NotAuthorized()


AdminDep = Depends(require_admin)

router = APIRouter(prefix="/api/v1")


@router.post("/admin/flash-sales", status_code=201, dependencies=[AdminDep])
async def open_flash_sale(body: FlashSaleCreate, flow: FlowDep) -> FlashSalePublic:
    """Reset and seed one sale: stock, price, and no orders."""
    await flow.open_sale(FlashSale(sku=body.sku, stock=body.stock, price_cents=body.price_cents))
    return FlashSalePublic(sku=body.sku, stock=body.stock, price_cents=body.price_cents)


@router.post("/orders", status_code=201, response_model=OrderPublic)
async def place_order(
    body: OrderCreate,
    flow: FlowDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    command = checked_command(body, settings=settings)
    reply = await flow.place_order(command, idempotency_key=idempotency_key)
    return _reply_response(reply)


@router.get("/orders/{order_id}")
async def get_order(order_id: UUID, flow: FlowDep) -> OrderDetail:
    order = await flow.find_order(order_id)
    if order is None:
        raise OrderNotFound(str(order_id))
    return OrderDetail(**order.__dict__)


@router.get("/inventory/{sku}")
async def get_inventory(sku: str, flow: FlowDep) -> InventoryPublic:
    level = await flow.stock_of(sku)
    if level is None:
        raise SaleNotFound(sku)
    return InventoryPublic(sku=level.sku, stock=level.stock, available=level.available)


def checked_command(body: OrderCreate, *, settings: OrdersSettings) -> PlaceOrder:
    """The order as a command, checked here once so both variants refuse a bad one alike; whether
    the SKU has a sale is the variant's to find out, as it reads the sale anyway."""
    if body.quantity > settings.orders_max_quantity:
        raise QuantityTooLarge(body.quantity, settings.orders_max_quantity)
    return PlaceOrder(sku=body.sku, quantity=body.quantity, customer_id=body.customer_id)


def _reply_response(reply: OrderReply) -> JSONResponse:
    media_type = PROBLEM_MEDIA_TYPE if reply.status_code >= 400 else "application/json"
    headers = {"Idempotent-Replayed": "true"} if reply.replayed else None
    return JSONResponse(reply.body, status_code=reply.status_code, media_type=media_type, headers=headers)
