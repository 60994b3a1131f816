# Vad som hänt: översikten, ordersökningen med varje orders tidslinje, granskningsloggen.

## Gemensamt för vyerna
view-never = aldrig
view-ago = för { $age } sedan
view-duration-seconds = { $n } s
view-duration-minutes = { $n } min
view-duration-hours = { $n } tim
view-duration-days = { $n } dygn
view-body-truncated = Visar de första { $shown } av { $total } tecken.
view-body-truncated-json = Visar de första { $shown } tecknen av den uppställda kroppen ({ $total } tecken som lagrad).
view-col-received = Mottagen
view-col-tenant = Kund
view-col-shop = Butik
view-col-order = Butiksorder
view-col-status = Orderstatus
view-col-state = Läge
view-col-mamut = Mamutnummer
view-col-attempts = Försök
view-col-last-error = Senaste fel
view-col-when = När
view-col-actor = Vem
view-col-action = Åtgärd
view-col-target = Vad
view-col-detail = Detaljer
view-state-fetching = hämtar ordern
view-state-pending = väntar
view-state-delivered = levererad
view-state-ignored = ignorerad
view-state-dead = misslyckad
view-state-held = spärrad
view-state-done = klar
view-state-superseded = ersatt

## Översikt
overview-title = Översikt
overview-no-tenants = Det finns inga kunder ännu.
overview-first-tenants = Visar de första { $n } kunderna.
overview-queue = Kö
overview-queue-depth = Väntar (i kö och hämtas)
overview-oldest-pending = Äldsta väntande händelse
overview-dead = Misslyckade leveranser
overview-held = Spärrade ordrar
overview-dispatch-dead = Misslyckade ändringar till butiker
overview-agents = Agenter
overview-no-agents = Ingen agent har skapats för den här kunden.
overview-shops = Butiker
overview-no-shops = Kunden har inga butiker.
overview-last-dispatch = Senaste ändring som butiken tog emot
overview-last-delivered = Senaste order som levererades till Mamut
overview-orders-chart = Ordrar per timme, senaste dygnet
overview-latency-chart = Webhook till Mamut, sekunder per timme, senaste dygnet
overview-median = median
overview-p95 = 95:e percentilen
view-agent-online = ansluten
view-agent-offline = ej ansluten
view-agent-version = Version
view-agent-connected-since = Ansluten sedan
view-agent-last-seen = Senast sedd
view-agent-address = Adress
view-agent-never-connected = Har aldrig anslutit.

## Ordrar
orders-title = Ordrar
search-order = Butikens order-id
search-mamut = Mamutnummer
search-email = Kundens e-post
search-state = Läge
search-any-state = alla lägen
search-from = Mottagen från
search-to = Mottagen till
search-submit = Sök
search-count = { $n } hittade (högst { $max }, nyaste först).
search-too-long = { $field } är längre än { $max } tecken.
search-bad-state = Det finns inget läge som heter ”{ $value }”.
search-bad-shop = ”{ $value }” är inget giltigt butiks-id.
search-bad-date = { $field }: ”{ $value }” är inget datum; skriv det som ÅÅÅÅ-MM-DD.
search-unreadable = Sökningen gick inte att läsa; ändra den och sök igen.
search-window = Sökte bland webhooks mottagna från { $from } till { $to }.
search-window-too-long = Sökningen omfattar { $days } dagar; begränsa ”Mottagen från” och ”Mottagen till” till högst { $max } dagar.

## En orders tidslinje
timeline-title = Order { $order }
timeline-heading = Tidslinje
timeline-truncated = Äldre poster visas inte: bara de nyaste { $max } av varje slag.
timeline-received = Webhook mottagen
timeline-webhook = webhook { $id }, orderstatus { $status }
timeline-open-event = öppna den här webhookens tidslinje
timeline-headers = Huvuden som de togs emot
timeline-signature = Signatur
timeline-body = Innehåll som det togs emot
timeline-edited-body = Innehåll efter en operatörs ändring
timeline-mamut-number = Mamutnummer { $number }
timeline-of-event = (webhookhändelse { $id })
timeline-sent-back = Statusändring skickad till butiken
timeline-status-change = Mamutstatus { $mamut } → butiksstatus { $shop }
timeline-capture = dra betalningen
timeline-email = mejla kunden
timeline-tracking = spårningsnummer { $number }
timeline-attempts = { $n } försök
timeline-updated = senast ändrad
timeline-shop-answer = Butiken svarade
history-fetching = Väntar på ordern från butiken
history-pending = I kö för leverans till Mamut
history-delivered = Levererad och inlagd i Mamut
history-ignored = Ignorerad (ingen utlösande status)
history-dead = Misslyckades: flyttad till de misslyckade
history-held = Spärrad: ordern är ogiltig
history-retry = Misslyckades, försöks igen
history-edited = Ändrad av en operatör

## Granskningslogg
audit-title = Granskningslogg
audit-newest = De senaste { $n } posterna, nyaste först.
audit-empty = Inget har loggats ännu.
