// The organizer's dashboard: their events, and for one event the figures of
// GET /api/v1/events/{id}/sales drawn with uPlot, fetched again every few seconds.
//
// Each chart's element carries the figures it draws as JSON in `data-figures`, so what the
// page shows can be checked without reading pixels.

(() => {
  "use strict";

  const { startStaffPage, problemText, t, locale } = window.EventHunting;
  const uPlot = window.uPlot;

  const REFRESH_MS = 5000;
  const LIST_PAGE_SIZE = 100;
  const MAX_LIST_PAGES = 10;
  const MAX_FILLED_BUCKETS = 2000; // empty buckets drawn as 0 up to this many, sparse beyond
  const CHART_HEIGHT = 220;
  const BUCKET_SECONDS = { minute: 60, hour: 3600, day: 86400 };
  const COLORS = { sold: "#1a7f37", placed: "#0969da", held: "#9a6700", gross: "#0969da", net: "#1a7f37", checkins: "#8250df" };
  const TIME_ZONE = "Asia/Ho_Chi_Minh";
  const COUNT_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

  const element = (id) => document.getElementById(id);
  const page = {
    board: element("board"),
    events: element("events"),
    eventsNote: element("events-note"),
    openForm: element("open-event-form"),
    openId: element("open-event-id"),
    openProblem: element("open-event-problem"),
    sales: element("event-sales"),
    title: element("sales-title"),
    status: element("sales-status"),
    live: element("live"),
    checkinLink: element("checkin-link"),
    bucket: element("bucket"),
    sellThroughRows: element("sell-through-table").tBodies[0],
    funnelNote: element("funnel-note"),
  };

  const state = { session: null, account: null, eventId: null, timer: null, charts: {}, refreshes: 0 };

  const money = new Intl.NumberFormat("vi-VN", { style: "currency", currency: "VND", maximumFractionDigits: 0 });
  const count = new Intl.NumberFormat(locale);
  const compact = new Intl.NumberFormat(locale, { notation: "compact", maximumFractionDigits: 1 });
  const percent = (rate) => (rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(1)} %`);

  // --- the organizer's events -------------------------------------------------------------

  // Every page of a list (at most MAX_LIST_PAGES of LIST_PAGE_SIZE): {items, total, read, problem}.
  async function readList(path) {
    const items = [];
    let total = 0;
    for (let number = 1; number <= MAX_LIST_PAGES; number += 1) {
      const separator = path.includes("?") ? "&" : "?";
      const answer = await state.session.request("GET", `${path}${separator}page=${number}&page_size=${LIST_PAGE_SIZE}`);
      if (answer.status !== 200) {
        return { items, total, problem: problemText(answer) };
      }
      total = answer.body.total;
      items.push(...answer.body.items);
      if (items.length >= total || answer.body.items.length === 0) {
        break;
      }
    }
    return { items, total, problem: null };
  }

  // The account's own events in every state (drafts included); an admin also sees every
  // published event of the public list.
  async function listEvents() {
    const admin = state.account.roles.includes("admin");
    const lists = [await readList("/api/v1/me/events")];
    if (admin) {
      lists.push(await readList("/api/v1/events"));
    }
    const byId = new Map();
    for (const list of lists) {
      for (const event of list.items) {
        byId.set(event.id, event);
      }
    }
    const events = [...byId.values()].sort((a, b) => a.starts_at.localeCompare(b.starts_at) || a.id.localeCompare(b.id));
    showEvents(events);
    const problem = lists.map((list) => list.problem).find((text) => text);
    const unread = lists.some((list) => list.total > list.items.length)
      ? t("only_soonest", { count: count.format(MAX_LIST_PAGES * LIST_PAGE_SIZE) })
      : "";
    page.eventsNote.textContent = problem || (events.length ? "" : t("no_events")) + unread;
  }

  function showEvents(events) {
    page.events.replaceChildren(
      ...events.map((event) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.eventId = event.id;
        const when = new Date(event.starts_at).toLocaleString(locale, { timeZone: TIME_ZONE, dateStyle: "medium", timeStyle: "short" });
        button.append(event.title, document.createElement("br"));
        const status = document.createElement("span");
        status.className = "status";
        status.textContent = `${when} · ${event.status}`;
        button.append(status);
        button.addEventListener("click", () => openEvent(event.id));
        item.append(button);
        return item;
      }),
    );
    markCurrent();
  }

  function markCurrent() {
    for (const button of page.events.querySelectorAll("button")) {
      button.setAttribute("aria-current", String(button.dataset.eventId === state.eventId));
    }
  }

  // --- one event's figures ----------------------------------------------------------------

  function openEvent(eventId) {
    eventId = eventId.trim().toUpperCase();
    if (!eventId) {
      return;
    }
    state.eventId = eventId;
    clearTimeout(state.timer);
    destroyCharts();
    page.openProblem.textContent = "";
    page.sales.hidden = true;
    page.sales.dataset.eventId = eventId;
    page.checkinLink.href = `/checkin?event=${encodeURIComponent(eventId)}`;
    markCurrent();
    const url = new URL(window.location.href);
    url.searchParams.set("event", eventId);
    window.history.replaceState(null, "", url);
    refresh();
  }

  async function refresh() {
    const eventId = state.eventId;
    clearTimeout(state.timer);
    if (!eventId) {
      return;
    }
    let answer;
    try {
      const bucket = page.bucket.value;
      answer = await state.session.request("GET", `/api/v1/events/${encodeURIComponent(eventId)}/sales?bucket=${bucket}`);
    } catch {
      answer = null;
    }
    if (eventId !== state.eventId) {
      return; // another event was opened meanwhile
    }
    if (answer === null) {
      setLive("stale", t("unreachable_retrying"));
    } else if (answer.status === 200) {
      show(answer.body);
      state.refreshes += 1;
      page.sales.dataset.refreshes = String(state.refreshes);
      const time = new Date().toLocaleTimeString(locale, { timeZone: TIME_ZONE });
      setLive("live", t("updated_every", { time, seconds: REFRESH_MS / 1000 }));
    } else {
      page.openProblem.textContent = answer.status === 404 ? t("no_such_event") : problemText(answer);
      page.sales.hidden = true;
      state.eventId = null;
      markCurrent();
      return;
    }
    state.timer = setTimeout(refresh, REFRESH_MS);
  }

  function setLive(liveState, text) {
    page.live.dataset.state = liveState;
    page.live.textContent = text;
  }

  function show(sales) {
    page.sales.hidden = false;
    page.title.textContent = sales.title;
    page.status.textContent = sales.status || t("no_events_yet");
    element("figure-sold").textContent = count.format(sales.tickets.sold);
    element("figure-gross").textContent = money.format(sales.revenue.gross);
    element("figure-vat").textContent = money.format(sales.revenue.vat);
    element("figure-net").textContent = money.format(sales.revenue.net);
    element("figure-conversion").textContent =
      `${count.format(sales.conversion.orders_paid)} / ${count.format(sales.conversion.orders_placed)}`;
    element("figure-checked-in").textContent = count.format(sales.tickets.checked_in);

    const timeline = sales.timeline;
    draw("timeline-chart", {
      bucket: timeline.bucket,
      items: timeline.items.map((item) => ({
        start: item.start,
        tickets_sold: item.tickets_sold,
        orders_placed: item.orders_placed,
        orders_paid: item.orders_paid,
      })),
    }, timelineChart);

    const sellThrough = sales.ticket_types.map((type) => ({
      id: type.id,
      name: type.name,
      quantity: type.quantity,
      sold: type.tickets.sold,
      held: type.tickets.held,
      sell_through: type.quantity ? Math.round((type.tickets.sold / type.quantity) * 10000) / 10000 : null,
    }));
    draw("sell-through-chart", sellThrough, sellThroughChart);
    showSellThroughTable(sellThrough);

    draw("revenue-chart", {
      currency: sales.currency,
      vat_rate_percent: sales.vat_rate_percent,
      gross: sales.revenue.gross,
      vat: sales.revenue.vat,
      net: sales.revenue.net,
      refunded: sales.revenue.refunded,
      refunded_vat: sales.revenue.refunded_vat,
      bucket: timeline.bucket,
      items: timeline.items.map((item) => ({ start: item.start, gross: item.gross, net: item.net })),
    }, revenueChart);

    const conversion = sales.conversion;
    draw("funnel-chart", {
      orders_placed: conversion.orders_placed,
      orders_paid: conversion.orders_paid,
      order_rate: conversion.order_rate,
      tickets_ordered: conversion.tickets_ordered,
      tickets_sold: conversion.tickets_sold,
      ticket_rate: conversion.ticket_rate,
    }, funnelChart);
    page.funnelNote.textContent =
      t("funnel", { order_rate: percent(conversion.order_rate), ticket_rate: percent(conversion.ticket_rate) }) +
      (sales.time_to_pay.median_seconds === null ? "" : t("median_time_to_pay", { seconds: sales.time_to_pay.median_seconds }));

    draw("checkins-chart", {
      checked_in: sales.tickets.checked_in,
      bucket: timeline.bucket,
      items: timeline.items
        .filter((item) => item.tickets_checked_in > 0)
        .map((item) => ({ start: item.start, tickets_checked_in: item.tickets_checked_in })),
    }, checkinsChart);
  }

  function showSellThroughTable(rows) {
    page.sellThroughRows.replaceChildren(
      ...rows.map((row) => {
        const line = document.createElement("tr");
        for (const value of [row.name, count.format(row.sold), count.format(row.held), count.format(row.quantity), percent(row.sell_through)]) {
          const cell = document.createElement("td");
          cell.textContent = value;
          line.append(cell);
        }
        return line;
      }),
    );
  }

  // --- charts -----------------------------------------------------------------------------

  // Draws `figures` into the element (again only when they changed) and records them on it.
  function draw(id, figures, build) {
    const target = element(id);
    const text = JSON.stringify(figures);
    if (target.dataset.figures === text && state.charts[id]) {
      return;
    }
    state.charts[id]?.destroy();
    target.replaceChildren();
    target.dataset.figures = text;
    state.charts[id] = build(target, figures);
  }

  function destroyCharts() {
    for (const [id, chart] of Object.entries(state.charts)) {
      chart.destroy();
      const target = element(id);
      target.replaceChildren();
      target.dataset.figures = "";
    }
    state.charts = {};
  }

  function chartWidth(target) {
    return Math.max(240, Math.floor(target.clientWidth || target.parentElement.clientWidth || 320));
  }

  // Buckets from the first with activity to the current one, empty ones as 0, so the time
  // axis is even (the API leaves empty buckets out).
  function filledSeries(bucket, items, fields) {
    const width = BUCKET_SECONDS[bucket];
    const starts = items.map((item) => Date.parse(item.start) / 1000);
    const current = Math.floor(Date.now() / 1000 / width) * width;
    const first = starts.length ? Math.min(starts[0], current) : current;
    const last = starts.length ? Math.max(starts[starts.length - 1], current) : current;
    const x = [];
    if ((last - first) / width < MAX_FILLED_BUCKETS) {
      for (let moment = first; moment <= last; moment += width) {
        x.push(moment);
      }
    } else {
      x.push(...starts);
    }
    const index = new Map(starts.map((start, position) => [start, items[position]]));
    return [x, ...fields.map((field) => x.map((moment) => (index.get(moment)?.[field] ?? 0)))];
  }

  // A y axis of counts (whole steps) or of money (compact: 1.5M).
  function yAxis(money = false) {
    const axis = { values: (u, splits) => splits.map((value) => compact.format(value)), size: 56 };
    if (!money) {
      axis.incrs = COUNT_STEPS;
    }
    return axis;
  }

  function timeAxisOptions(target, bucket, x, series, { money = false } = {}) {
    const width = BUCKET_SECONDS[bucket];
    // From the data, half a bucket beyond each end (uPlot widens a single point to a day).
    const span = [x[0] - width / 2, x[x.length - 1] + width / 2];
    return {
      width: chartWidth(target),
      height: CHART_HEIGHT,
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), TIME_ZONE),
      scales: {
        x: { time: true, range: () => span },
        y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] },
      },
      axes: [{}, yAxis(money)],
      series: [{}, ...series],
    };
  }

  function bars(label, color) {
    return { label, stroke: color, fill: `${color}99`, width: 1, paths: uPlot.paths.bars({ size: [0.7, 48] }), points: { show: false } };
  }

  function line(label, color) {
    return { label, stroke: color, width: 2, points: { show: true, size: 5 } };
  }

  function timelineChart(target, figures) {
    const data = filledSeries(figures.bucket, figures.items, ["tickets_sold", "orders_placed"]);
    const options = timeAxisOptions(target, figures.bucket, data[0], [
      bars(t("tickets_sold"), COLORS.sold),
      line(t("orders_placed"), COLORS.placed),
    ]);
    return new uPlot(options, data, target);
  }

  function revenueChart(target, figures) {
    // Cumulative gross and net since the first bucket shown: how the revenue grew.
    const [x, gross, net] = filledSeries(figures.bucket, figures.items, ["gross", "net"]);
    const running = (values) => {
      let sum = 0;
      return values.map((value) => (sum += value));
    };
    const options = timeAxisOptions(
      target,
      figures.bucket,
      x,
      [line(t("gross"), COLORS.gross), line(t("net"), COLORS.net)],
      { money: true },
    );
    return new uPlot(options, [x, running(gross), running(net)], target);
  }

  function checkinsChart(target, figures) {
    const data = filledSeries(figures.bucket, figures.items, ["tickets_checked_in"]);
    const options = timeAxisOptions(target, figures.bucket, data[0], [bars(t("checked_in"), COLORS.checkins)]);
    return new uPlot(options, data, target);
  }

  // Bars over named categories (ticket types, funnel steps): x is the category's index.
  function categoryChart(target, labels, series, yAxisOptions) {
    const x = labels.map((_, position) => position);
    const options = {
      width: chartWidth(target),
      height: CHART_HEIGHT,
      scales: {
        x: { time: false, range: () => [-0.5, Math.max(labels.length, 1) - 0.5] },
        y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] },
      },
      axes: [
        { splits: () => x, values: (u, splits) => splits.map((value) => labels[value] ?? ""), gap: 4 },
        yAxisOptions,
      ],
      series: [{}, ...series.map(({ label, color }) => bars(label, color))],
      cursor: { drag: { x: false, y: false } },
    };
    return new uPlot(options, [x, ...series.map(({ values }) => values)], target);
  }

  function sellThroughChart(target, rows) {
    return categoryChart(
      target,
      rows.map((row) => row.name),
      [{ label: t("sold_percent_of_quantity"), color: COLORS.sold, values: rows.map((row) => (row.sell_through ?? 0) * 100) }],
      { values: (u, splits) => splits.map((value) => `${Math.round(value)} %`), size: 56 },
    );
  }

  function funnelChart(target, figures) {
    return categoryChart(
      target,
      [t("orders_placed"), t("orders_paid")],
      [{ label: t("orders"), color: COLORS.placed, values: [figures.orders_placed, figures.orders_paid] }],
      yAxis(),
    );
  }

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      for (const [id, chart] of Object.entries(state.charts)) {
        chart.setSize({ width: chartWidth(element(id)), height: CHART_HEIGHT });
      }
    }, 150);
  });

  // A hidden tab stops asking; it catches up as soon as it is seen again.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(state.timer);
    } else if (state.eventId) {
      refresh();
    }
  });

  // --- wiring -----------------------------------------------------------------------------

  page.openForm.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    openEvent(page.openId.value);
  });
  page.bucket.addEventListener("change", () => {
    if (state.eventId) {
      refresh();
    }
  });

  startStaffPage({
    refuse: (account) =>
      account.roles.includes("organizer") || account.roles.includes("admin") ? null : t("for_organizers"),
    onSignedIn: (session, account) => {
      state.session = session;
      state.account = account;
      page.board.hidden = false;
      listEvents();
      const wanted = new URLSearchParams(window.location.search).get("event");
      if (wanted) {
        openEvent(wanted);
      }
    },
    onSignedOut: () => {
      clearTimeout(state.timer);
      destroyCharts();
      state.eventId = null;
      page.board.hidden = true;
      page.sales.hidden = true;
    },
  });
})();
