"""How each shipped exchange shapes its answers, so the lab looks like the real thing.

A :class:`Dialect` holds templates only: realistic bodies for the REST health answer, the greeting,
the subscription ack, the data messages and the pong. The engine in :mod:`mpnet.lab.server` lays
every template under the profile's own pattern (:func:`mpnet.lab.messages.synthesize`), so the
profile stays the authority and an exchange without a dialect still gets a working simulator.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mpnet.core.match import dig

JSON = Any


@dataclass(slots=True)
class Stream:
    """What templates may read: the server clock (skew included) and per-connection ids.

    ``event_delay`` (seconds) is how far in the past data messages are stamped (the
    ``feed_lag`` fault): :meth:`for_events` is the clock the data templates read.
    """

    now: Callable[[], float] = time.time
    connection_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    channel_id: int = 17
    sequence: int = 0
    event_delay: float = 0.0

    def for_events(self) -> Stream:
        """This stream as data templates see it: its clock ``event_delay`` in the past."""
        if not self.event_delay:
            return self
        clock, delay = self.now, self.event_delay
        return dataclasses.replace(self, now=lambda: clock() - delay, event_delay=0.0)

    def ms(self) -> int:
        return int(self.now() * 1000)

    def iso(self, digits: int = 3) -> str:
        """RFC 3339 UTC time with ``digits`` fractional digits (0, 3 or 6)."""
        moment = datetime.fromtimestamp(self.now(), UTC)
        if digits == 0:
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[: 20 + digits] + "Z"

    def price(self, offset: float = 0.0) -> str:
        """A BTC price that moves a little with every data message."""
        return f"{64210.5 + (self.sequence % 40) * 0.5 + offset:.1f}"


Template = Callable[[Stream, JSON], JSON]


@dataclass(frozen=True, slots=True)
class Dialect:
    """Templates for one exchange; every one is optional.

    ``ack``, ``data``, ``pong`` and ``subscribe_error`` receive the client's request (the
    subscribe or ping message). ``greeting`` is sent on connect before the profile's welcome
    (Kraken's status message). ``ping_frames`` makes the server send WebSocket ping frames and
    drop clients that do not answer them (Binance). ``subscribe_error`` is the exchange's answer
    when it refuses a subscription, sent for the ``subscribe_error`` fault and whenever
    ``rejects`` says the exchange's own rules refuse the request (Gate: a ``time`` more than
    60 s off its clock). ``maintenance`` is the HTTP 200 answer of a status endpoint during
    maintenance (the ``maintenance`` fault). ``time`` answers the profile's ``rest.time``
    request (KuCoin's ``/api/v1/timestamp``).
    """

    health: Callable[[Stream], JSON] | None = None
    time: Callable[[Stream], JSON] | None = None
    maintenance: Callable[[Stream], JSON] | None = None
    bootstrap: Callable[[Stream, str, str], JSON] | None = None
    greeting: Callable[[Stream], list[JSON]] | None = None
    welcome: Callable[[Stream, Mapping[str, str]], JSON] | None = None
    ack: Template | None = None
    data: Template | None = None
    pong: Template | None = None
    subscribe_error: Template | None = None
    rejects: Callable[[Stream, JSON], bool] | None = None
    ping_frames: bool = False


GENERIC = Dialect()


def _binance_ticker(s: Stream, sub: JSON) -> JSON:
    stream_name = str(dig(sub, "params.0") or "btcusdt@ticker")
    now = s.ms()
    return {
        "e": "24hrTicker",
        "E": now,
        "s": stream_name.split("@")[0].upper(),
        "p": "312.40",
        "P": "0.489",
        "w": "64102.77",
        "x": "63898.10",
        "c": s.price(),
        "Q": "0.00120",
        "b": s.price(-0.1),
        "B": "1.20412",
        "a": s.price(),
        "A": "0.83200",
        "o": "63898.10",
        "h": "64880.00",
        "l": "63500.01",
        "v": "11842.30551",
        "q": "759123456.78",
        "O": now - 86_400_000,
        "C": now,
        "F": 4_100_000_000 + s.sequence,
        "L": 4_101_000_000 + s.sequence,
        "n": 1_000_001,
    }


BINANCE = Dialect(
    health=lambda s: {"serverTime": s.ms()},
    ack=lambda s, sub: {"result": None, "id": dig(sub, "id")},
    data=_binance_ticker,
    subscribe_error=lambda s, sub: {
        "error": {"code": 2, "msg": "Invalid request: invalid stream"},
        "id": dig(sub, "id"),
    },
    ping_frames=True,
)


def _okx_ticker(s: Stream, sub: JSON) -> JSON:
    arg = dig(sub, "args.0") or {"channel": "tickers", "instId": "BTC-USDT"}
    return {
        "arg": arg,
        "data": [
            {
                "instType": "SPOT",
                "instId": dig(arg, "instId") or "BTC-USDT",
                "last": s.price(),
                "lastSz": "0.0011",
                "askPx": s.price(0.1),
                "askSz": "0.52",
                "bidPx": s.price(),
                "bidSz": "1.37",
                "open24h": "63898.1",
                "high24h": "64880",
                "low24h": "63500",
                "volCcy24h": "612345678.12",
                "vol24h": "9563.1",
                "ts": str(s.ms()),
                "sodUtc0": "64011.2",
                "sodUtc8": "63950.4",
            }
        ],
    }


OKX = Dialect(
    health=lambda s: {"code": "0", "msg": "", "data": [{"ts": str(s.ms())}]},
    ack=lambda s, sub: {
        "event": "subscribe",
        "arg": dig(sub, "args.0"),
        "connId": s.connection_id[:8],
    },
    data=_okx_ticker,
    pong=lambda s, ping: "pong",
    subscribe_error=lambda s, sub: {
        "event": "error",
        "code": "60018",
        "msg": (
            f"Wrong URL or channel:{dig(sub, 'args.0.channel')},instId:{dig(sub, 'args.0.instId')}"
            " doesn't exist. Please use the correct URL, channel and parameters referring to API"
            " document."
        ),
        "connId": s.connection_id[:8],
    },
)


def _deribit_envelope(s: Stream) -> dict[str, JSON]:
    micros = int(s.now() * 1_000_000)
    return {"usIn": micros, "usOut": micros + 41, "usDiff": 41, "testnet": False}


def _deribit_ticker(s: Stream, sub: JSON) -> JSON:
    channel = str(dig(sub, "params.channels.0") or "ticker.BTC-PERPETUAL.100ms")
    return {
        "jsonrpc": "2.0",
        "method": "subscription",
        "params": {
            "channel": channel,
            "data": {
                "timestamp": s.ms(),
                "instrument_name": channel.split(".")[1] if channel.count(".") >= 1 else channel,
                "state": "open",
                "last_price": float(s.price()),
                "best_bid_price": float(s.price(-0.5)),
                "best_bid_amount": 12340.0,
                "best_ask_price": float(s.price()),
                "best_ask_amount": 5020.0,
                "mark_price": float(s.price(-0.2)),
                "index_price": float(s.price(-3.1)),
                "open_interest": 1203456780,
                "funding_8h": 0.0000123,
                "current_funding": 0.0,
                "stats": {
                    "volume": 8123.4,
                    "price_change": 0.4891,
                    "low": 63500.0,
                    "high": 64880.0,
                },
            },
        },
    }


DERIBIT = Dialect(
    health=lambda s: {"jsonrpc": "2.0", "result": {"version": "1.2.26"}, **_deribit_envelope(s)},
    ack=lambda s, sub: {
        "jsonrpc": "2.0",
        "id": dig(sub, "id"),
        "result": dig(sub, "params.channels") or [],
        **_deribit_envelope(s),
    },
    data=_deribit_ticker,
    pong=lambda s, ping: {
        "jsonrpc": "2.0",
        "id": dig(ping, "id"),
        "result": {"version": "1.2.26"},
        **_deribit_envelope(s),
    },
    subscribe_error=lambda s, sub: {
        "jsonrpc": "2.0",
        "id": dig(sub, "id"),
        "error": {
            "message": "Invalid params",
            "data": {"reason": "invalid channel", "param": "channels"},
            "code": -32602,
        },
        **_deribit_envelope(s),
    },
)


def _bybit_ticker(s: Stream, sub: JSON) -> JSON:
    topic = str(dig(sub, "args.0") or "tickers.BTCUSDT")
    return {
        "topic": topic,
        "ts": s.ms(),
        "type": "snapshot",
        "cs": 81_000_000_000 + s.sequence,
        "data": {
            "symbol": topic.rpartition(".")[2],
            "lastPrice": s.price(),
            "highPrice24h": "64880",
            "lowPrice24h": "63500.01",
            "prevPrice24h": "63898.1",
            "volume24h": "10231.551",
            "turnover24h": "655123456.2213",
            "price24hPcnt": "0.0049",
            "usdIndexPrice": s.price(-2.0),
        },
    }


BYBIT = Dialect(
    health=lambda s: {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"timeSecond": str(int(s.now())), "timeNano": str(int(s.now() * 1e9))},
        "retExtInfo": {},
        "time": s.ms(),
    },
    ack=lambda s, sub: {
        "success": True,
        "ret_msg": "",
        "conn_id": s.connection_id,
        "req_id": dig(sub, "req_id") or "",
        "op": "subscribe",
    },
    data=_bybit_ticker,
    pong=lambda s, ping: {
        "success": True,
        "ret_msg": "pong",
        "conn_id": s.connection_id,
        "req_id": dig(ping, "req_id") or "",
        "op": "ping",
    },
    subscribe_error=lambda s, sub: {
        "success": False,
        "ret_msg": f"Invalid symbol :[{dig(sub, 'args.0')}]",
        "conn_id": s.connection_id,
        "req_id": dig(sub, "req_id") or "",
        "op": "subscribe",
    },
)


def _coinbase_ticker(s: Stream, sub: JSON) -> JSON:
    product = str(dig(sub, "product_ids.0") or "BTC-USD")
    return {
        "channel": "ticker",
        "client_id": "",
        "timestamp": s.iso(6),
        "sequence_num": s.sequence,
        "events": [
            {
                "type": "snapshot" if s.sequence <= 1 else "update",
                "tickers": [
                    {
                        "type": "ticker",
                        "product_id": product,
                        "price": s.price(),
                        "volume_24_h": "9123.45678912",
                        "low_24_h": "63500.01",
                        "high_24_h": "64880",
                        "low_52_w": "38555",
                        "high_52_w": "73835.57",
                        "price_percent_chg_24_h": "0.48912",
                        "best_bid": s.price(-0.01),
                        "best_bid_quantity": "0.2510",
                        "best_ask": s.price(),
                        "best_ask_quantity": "0.0380",
                    }
                ],
            }
        ],
    }


COINBASE = Dialect(
    health=lambda s: {
        "iso": s.iso(3),
        "epochSeconds": str(int(s.now())),
        "epochMillis": str(s.ms()),
    },
    ack=lambda s, sub: {
        "channel": "subscriptions",
        "client_id": "",
        "timestamp": s.iso(6),
        "sequence_num": s.sequence,
        "events": [
            {"subscriptions": {str(dig(sub, "channel") or "ticker"): dig(sub, "product_ids")}}
        ],
    },
    data=_coinbase_ticker,
    subscribe_error=lambda s, sub: {"type": "error", "message": "failure to subscribe"},
)


def _kraken_ticker(s: Stream, sub: JSON) -> JSON:
    return {
        "channel": "ticker",
        "type": "snapshot" if s.sequence <= 1 else "update",
        "data": [
            {
                "symbol": dig(sub, "params.symbol.0") or "BTC/USD",
                "bid": float(s.price(-0.1)),
                "bid_qty": 2.1034,
                "ask": float(s.price()),
                "ask_qty": 0.4017,
                "last": float(s.price()),
                "volume": 2311.98,
                "vwap": 64102.7,
                "low": 63500.0,
                "high": 64880.0,
                "change": 312.4,
                "change_pct": 0.49,
                "timestamp": s.iso(6),
            }
        ],
    }


KRAKEN = Dialect(
    health=lambda s: {
        "error": [],
        "result": {"status": "online", "timestamp": s.iso(0)},
    },
    maintenance=lambda s: {
        "error": [],
        "result": {"status": "maintenance", "timestamp": s.iso(0)},
    },
    greeting=lambda s: [
        {
            "channel": "status",
            "type": "update",
            "data": [
                {
                    "version": "2.0.10",
                    "system": "online",
                    "api_version": "v2",
                    "connection_id": int(s.connection_id[:15], 16),
                }
            ],
        }
    ],
    ack=lambda s, sub: {
        "method": "subscribe",
        "result": {
            "channel": dig(sub, "params.channel") or "ticker",
            "event_trigger": "trades",
            "snapshot": True,
            "symbol": dig(sub, "params.symbol.0") or "BTC/USD",
        },
        "success": True,
        "time_in": s.iso(6),
        "time_out": s.iso(6),
    },
    data=_kraken_ticker,
    pong=lambda s, ping: {
        "method": "pong",
        **({"req_id": dig(ping, "req_id")} if dig(ping, "req_id") is not None else {}),
        "time_in": s.iso(6),
        "time_out": s.iso(6),
    },
    subscribe_error=lambda s, sub: {
        "error": f"Currency pair not supported {dig(sub, 'params.symbol.0')}",
        "method": "subscribe",
        "success": False,
        "symbol": dig(sub, "params.symbol.0"),
        "time_in": s.iso(6),
        "time_out": s.iso(6),
    },
)


def _bitget_ticker(s: Stream, sub: JSON) -> JSON:
    arg = dig(sub, "args.0") or {"instType": "SPOT", "channel": "ticker", "instId": "BTCUSDT"}
    return {
        "action": "snapshot",
        "arg": arg,
        "data": [
            {
                "instId": dig(arg, "instId") or "BTCUSDT",
                "lastPr": s.price(),
                "open24h": "63898.1",
                "high24h": "64880",
                "low24h": "63500.01",
                "change24h": "0.0049",
                "bidPr": s.price(-0.01),
                "askPr": s.price(),
                "bidSz": "0.8831",
                "askSz": "0.0127",
                "baseVolume": "8012.3301",
                "quoteVolume": "513345123.88",
                "openUtc": "64011.2",
                "changeUtc24h": "0.0031",
                "ts": str(s.ms()),
            }
        ],
        "ts": s.ms(),
    }


BITGET = Dialect(
    health=lambda s: {
        "code": "00000",
        "msg": "success",
        "requestTime": s.ms(),
        "data": {"serverTime": str(s.ms())},
    },
    ack=lambda s, sub: {"event": "subscribe", "arg": dig(sub, "args.0")},
    data=_bitget_ticker,
    pong=lambda s, ping: "pong",
    subscribe_error=lambda s, sub: {
        "event": "error",
        "arg": dig(sub, "args.0"),
        "code": 30001,
        "msg": (
            f"instType:{dig(sub, 'args.0.instType')},channel:{dig(sub, 'args.0.channel')},"
            f"instId:{dig(sub, 'args.0.instId')} doesn't exist"
        ),
        "op": "subscribe",
    },
)


def _gate_envelope(s: Stream) -> dict[str, JSON]:
    return {"time": int(s.now()), "time_ms": s.ms(), "conn_id": s.connection_id[:16]}


#: Gate refuses a request whose ``time`` is further than this from its clock (seconds).
GATE_TIME_WINDOW_S = 60


def _gate_time_off(s: Stream, request: JSON) -> bool:
    sent = dig(request, "time")
    return isinstance(sent, int | float) and abs(sent - s.now()) > GATE_TIME_WINDOW_S


GATE = Dialect(
    health=lambda s: {"server_time": s.ms()},
    ack=lambda s, sub: {
        **_gate_envelope(s),
        "channel": dig(sub, "channel"),
        "event": "subscribe",
        "payload": dig(sub, "payload"),
        "result": {"status": "success"},
    },
    data=lambda s, sub: {
        "time": int(s.now()),
        "time_ms": s.ms(),
        "channel": dig(sub, "channel") or "spot.tickers",
        "event": "update",
        "result": {
            "currency_pair": dig(sub, "payload.0") or "BTC_USDT",
            "last": s.price(),
            "lowest_ask": s.price(0.1),
            "highest_bid": s.price(),
            "change_percentage": "0.4891",
            "base_volume": "5123.81234",
            "quote_volume": "328456123.1",
            "high_24h": "64880",
            "low_24h": "63500.01",
        },
    },
    pong=lambda s, ping: {**_gate_envelope(s), "channel": "spot.pong", "event": "", "result": None},
    subscribe_error=lambda s, sub: {
        **_gate_envelope(s),
        "channel": dig(sub, "channel"),
        "event": "subscribe",
        "payload": dig(sub, "payload"),
        "error": {"code": 2, "message": "Invalid argument provided"},
        "result": None,
    },
    rejects=_gate_time_off,
)


KUCOIN = Dialect(
    health=lambda s: {"code": "200000", "data": {"status": "open", "msg": ""}},
    time=lambda s: {"code": "200000", "data": s.ms()},
    maintenance=lambda s: {
        "code": "200000",
        "data": {"status": "close", "msg": "upgrade match engine"},
    },
    bootstrap=lambda s, token, endpoint: {
        "code": "200000",
        "data": {
            "token": token,
            "instanceServers": [
                {
                    "endpoint": endpoint,
                    "encrypt": True,
                    "protocol": "websocket",
                    "pingInterval": 18000,
                    "pingTimeout": 10000,
                }
            ],
        },
    },
    welcome=lambda s, query: {"id": query.get("connectId") or s.connection_id, "type": "welcome"},
    ack=lambda s, sub: {"id": dig(sub, "id"), "type": "ack"},
    data=lambda s, sub: {
        "type": "message",
        "topic": dig(sub, "topic") or "/market/ticker:BTC-USDT",
        "subject": "trade.ticker",
        "data": {
            "sequence": str(1_550_000_000_000 + s.sequence),
            "price": s.price(),
            "size": "0.00012",
            "bestAsk": s.price(0.1),
            "bestAskSize": "0.3121",
            "bestBid": s.price(),
            "bestBidSize": "1.0044",
            # The last match's time (the real field is lower-case `time`), not the push time.
            "time": s.ms(),
        },
    },
    pong=lambda s, ping: {"id": dig(ping, "id"), "type": "pong", "timestamp": s.ms() * 1000},
    subscribe_error=lambda s, sub: {
        "id": dig(sub, "id"),
        "type": "error",
        "code": 404,
        "data": f"topic {dig(sub, 'topic')} is not found",
    },
)


HTX = Dialect(
    health=lambda s: {"status": "ok", "data": s.ms()},
    ack=lambda s, sub: {
        "id": dig(sub, "id"),
        "status": "ok",
        "subbed": dig(sub, "sub"),
        "ts": s.ms(),
    },
    data=lambda s, sub: {
        "ch": dig(sub, "sub") or "market.btcusdt.ticker",
        "ts": s.ms(),
        "tick": {
            "open": 63898.1,
            "high": 64880.0,
            "low": 63500.01,
            "close": float(s.price()),
            "amount": 4123.55,
            "vol": 264123456.12,
            "count": 412345,
            "bid": float(s.price(-0.01)),
            "bidSize": 0.8123,
            "ask": float(s.price()),
            "askSize": 0.0421,
            "lastPrice": float(s.price()),
            "lastSize": 0.0011,
        },
    },
    # The client's {"ping": n} echoed as {"pong": n} (HTX's own keepalive shape).
    pong=lambda s, ping: {"pong": dig(ping, "ping")},
    subscribe_error=lambda s, sub: {
        "status": "error",
        "ts": s.ms(),
        "id": dig(sub, "id"),
        "err-code": "bad-request",
        "err-msg": f"invalid topic {dig(sub, 'sub')}",
    },
)


def _bitfinex_ticker(s: Stream, sub: JSON) -> JSON:
    price = float(s.price())
    return [
        s.channel_id,
        [price - 1.0, 12.41, price, 8.02, 312.4, 0.0049, price, 1523.87, 64880.0, 63500.0],
    ]


BITFINEX = Dialect(
    health=lambda s: [1],
    maintenance=lambda s: [0],
    welcome=lambda s, query: {
        "event": "info",
        "version": 2,
        "serverId": str(uuid.UUID(s.connection_id)),
        "platform": {"status": 1},
    },
    ack=lambda s, sub: {
        "event": "subscribed",
        "channel": dig(sub, "channel") or "ticker",
        "chanId": s.channel_id,
        "symbol": dig(sub, "symbol"),
        "pair": str(dig(sub, "symbol") or "tBTCUSD")[1:],
    },
    data=_bitfinex_ticker,
    pong=lambda s, ping: {"event": "pong", "ts": s.ms(), "cid": dig(ping, "cid")},
    subscribe_error=lambda s, sub: {
        "event": "error",
        "msg": "symbol: invalid",
        "code": 10300,
        "pair": str(dig(sub, "symbol") or "tBTCUSD")[1:],
        "channel": dig(sub, "channel"),
        "symbol": dig(sub, "symbol"),
    },
)


def _bitmex_instrument(s: Stream, sub: JSON) -> JSON:
    topic = str(dig(sub, "args.0") or "instrument:XBTUSD")
    table, _, symbol = topic.partition(":")
    return {
        "table": table,
        "action": "partial" if s.sequence <= 1 else "update",
        "data": [
            {
                "symbol": symbol or "XBTUSD",
                "state": "Open",
                "lastPrice": float(s.price()),
                "bidPrice": float(s.price(-0.5)),
                "askPrice": float(s.price()),
                "markPrice": float(s.price(-0.2)),
                "fundingRate": 0.0001,
                "timestamp": s.iso(3),
            }
        ],
    }


BITMEX = Dialect(
    health=lambda s: {"name": "BitMEX API", "version": "1.2.0", "timestamp": s.ms()},
    welcome=lambda s, query: {
        "info": "Welcome to the BitMEX Realtime API.",
        "version": "2.0.0",
        "timestamp": s.iso(3),
        "docs": "https://www.bitmex.com/app/wsAPI",
        "heartbeatEnabled": False,
        "limit": {"remaining": 39},
    },
    ack=lambda s, sub: {"success": True, "subscribe": dig(sub, "args.0"), "request": sub},
    data=_bitmex_instrument,
    pong=lambda s, ping: "pong",
    subscribe_error=lambda s, sub: {
        "status": 400,
        "error": f"Unknown table: {str(dig(sub, 'args.0') or '').partition(':')[0]}",
        "meta": {},
        "request": sub,
    },
)


#: Dialects of the shipped profiles, by profile name.
DIALECTS: dict[str, Dialect] = {
    "binance": BINANCE,
    "binance-usdm": BINANCE,
    "okx": OKX,
    "deribit": DERIBIT,
    "bybit": BYBIT,
    "coinbase": COINBASE,
    "kraken": KRAKEN,
    "bitget": BITGET,
    "gate": GATE,
    "kucoin": KUCOIN,
    "htx": HTX,
    "bitfinex": BITFINEX,
    "bitmex": BITMEX,
}


def dialect_for(name: str) -> Dialect:
    """The dialect of a shipped exchange, or the generic one (pattern-only answers)."""
    return DIALECTS.get(name, GENERIC)
