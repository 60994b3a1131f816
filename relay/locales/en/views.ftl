# What happened: the overview, the order search with each order's timeline, the audit log.

## Shared by the views
view-never = never
view-ago = { $age } ago
view-duration-seconds = { $n } s
view-duration-minutes = { $n } min
view-duration-hours = { $n } h
view-duration-days = { $n } d
view-body-truncated = Showing the first { $shown } of { $total } characters.
view-body-truncated-json = Showing the first { $shown } characters of the body laid out ({ $total } characters as stored).
view-col-received = Received
view-col-tenant = Tenant
view-col-shop = Shop
view-col-order = Shop order
view-col-status = Order status
view-col-state = State
view-col-mamut = Mamut number
view-col-attempts = Attempts
view-col-last-error = Last error
view-col-when = When
view-col-actor = Who
view-col-action = Action
view-col-target = What
view-col-detail = Detail
view-state-fetching = fetching the order
view-state-pending = pending
view-state-delivered = delivered
view-state-ignored = ignored
view-state-dead = dead letter
view-state-held = held
view-state-done = done
view-state-superseded = superseded

## Overview
overview-title = Overview
overview-no-tenants = There are no tenants yet.
overview-first-tenants = Showing the first { $n } tenants.
overview-queue = Queue
overview-queue-depth = Waiting (pending and fetching)
overview-oldest-pending = Oldest pending event
overview-dead = Dead letters
overview-held = Held orders
overview-dispatch-dead = Failed changes to shops
overview-agents = Agents
overview-no-agents = No agent has been created for this tenant.
overview-shops = Shops
overview-no-shops = This tenant has no shops.
overview-last-dispatch = Last change applied by the shop
overview-last-delivered = Last order delivered to Mamut
overview-orders-chart = Orders per hour, last 24 hours
overview-latency-chart = Webhook to Mamut, seconds per hour, last 24 hours
overview-median = median
overview-p95 = 95th percentile
view-agent-online = online
view-agent-offline = offline
view-agent-version = Version
view-agent-connected-since = Connected since
view-agent-last-seen = Last seen
view-agent-address = Address
view-agent-never-connected = Has never connected.

## Orders
orders-title = Orders
search-order = Shop order id
search-mamut = Mamut number
search-email = Customer e-mail
search-state = State
search-any-state = any state
search-from = Received from
search-to = Received to
search-submit = Search
search-count = { $n } found (at most { $max }, newest first).
search-too-long = { $field } is longer than { $max } characters.
search-bad-state = There is no state called "{ $value }".
search-bad-shop = "{ $value }" is not a valid shop id.
search-bad-date = { $field }: "{ $value }" is not a date; write it as YYYY-MM-DD.
search-unreadable = The search could not be read; change it and search again.
search-window = Searched webhooks received from { $from } to { $to }.
search-window-too-long = The search covers { $days } days; narrow "Received from" and "Received to" to at most { $max } days.

## An order's timeline
timeline-title = Order { $order }
timeline-heading = Timeline
timeline-truncated = Older entries not shown: only the newest { $max } of each kind are.
timeline-received = Webhook received
timeline-webhook = webhook { $id }, order status { $status }
timeline-open-event = open this webhook's timeline
timeline-headers = Headers as received
timeline-signature = Signature
timeline-body = Body as received
timeline-edited-body = Body after an operator's edit
timeline-mamut-number = Mamut number { $number }
timeline-of-event = (webhook event { $id })
timeline-sent-back = Status change sent to the shop
timeline-status-change = Mamut status { $mamut } → shop status { $shop }
timeline-capture = capture the payment
timeline-email = e-mail the customer
timeline-tracking = tracking number { $number }
timeline-attempts = { $n } attempts
timeline-updated = last change
timeline-shop-answer = The shop answered
history-fetching = Waiting for the order from the shop
history-pending = Queued for delivery to Mamut
history-delivered = Delivered and written in Mamut
history-ignored = Ignored (not a trigger status)
history-dead = Failed: moved to the dead letters
history-held = Held: the order is invalid
history-retry = Failed, will be tried again
history-edited = Edited by an operator

## Audit log
audit-title = Audit log
audit-newest = The newest { $n } entries, newest first.
audit-empty = Nothing has been recorded yet.
