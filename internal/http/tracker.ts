import type { Hono } from 'hono'

/**
 * The tracker snippet, served at /t.js: 1,329 bytes, 784 gzipped (`gzip -9 | wc -c`; keep it
 * under 1 KB). A site adds
 *   <script defer src="https://sluice.example.com/t.js" data-site="my-site"></script>
 * and each page view (including SPA route changes through history.pushState and popstate)
 * is sent with navigator.sendBeacon as text/plain, which needs no CORS preflight, or with
 * fetch(keepalive) where sendBeacon is missing or refuses. Every event carries the path,
 * screen_width (screen.width), the utm_source/medium/campaign/content/term found in
 * location.search, click_id_param (the name, never the value, of a gclid, gbraid, wbraid or
 * msclkid in location.search, so an auto-tagged ad click counts as paid), and referrer
 * (document.referrer) unless it is this page's own host; the
 * path, referrer and tags cut to the API's limits (c() drops a high surrogate the cut
 * would leave alone). No timestamp: the API stamps the time it receives the event, so a
 * visitor whose clock runs fast is not refused as "in the future".
 * Custom events: sluice('signup', {props: {plan: 'pro'}}) sends event_type 'signup' with
 * the current path and the props; calls made before the script has run are queued by
 *   <script>window.sluice=window.sluice||function(){(window.sluice.q=window.sluice.q||[]).push(arguments)}</script>
 * and sent once it runs, after its page view. data-dnt="true" makes it send nothing when the
 * browser asks not to be tracked. By default it stores nothing on the device and sends no
 * user_id: the API derives the day's visitor id from the IP and user agent (internal/identity),
 * and an id an earlier version left in localStorage is deleted. With data-persist="true" (a
 * site that has its visitors' consent) it keeps a random id in localStorage (sluice_uid) and
 * sends it as user_id, so a returning visitor is the same visitor on any day.
 */
export const TRACKER_JS =
  '(function(w,d,n,l){var s=d.currentScript;if(!s)return;var e=new URL("/event",s.src).href,t=s.dataset.site,q=w.sluice&&w.sluice.q||[],u;' +
  'w.sluice=function(){};if(s.dataset.dnt=="true"&&(n.doNotTrack=="1"||w.doNotTrack=="1"))return;' +
  'try{s.dataset.persist=="true"?u=localStorage.sluice_uid||(localStorage.sluice_uid=Math.random().toString(36).slice(2)+Date.now().toString(36)):localStorage.removeItem("sluice_uid")}catch(x){}' +
  'function c(x,m){return x.replace(/\\0/g,"").slice(0,m).replace(/[\\ud800-\\udbff]$/,"")}' +
  'function p(v,o){var b={site_id:t,event_type:v||"pageview",path:c(l.pathname,2048),user_id:u,screen_width:screen.width},' +
  'r=d.referrer,a=new URLSearchParams(l.search);try{if(r&&new URL(r).host!=l.host)b.referrer=c(r,2048)}catch(x){}' +
  '"source medium campaign content term".split(" ").forEach(function(k){if(v=a.get("utm_"+k))b["utm_"+k]=c(v,256)});' +
  '"gclid gbraid wbraid msclkid".split(" ").forEach(function(k){a.has(k)&&(b.click_id_param=k)});' +
  'if(o&&o.props)b.props=o.props;b=JSON.stringify(b);' +
  'n.sendBeacon&&n.sendBeacon(e,b)||fetch(e,{method:"POST",body:b,keepalive:true,headers:{"Content-Type":"text/plain"}})}' +
  'function g(){p()}var h=history.pushState;history.pushState=function(){h.apply(this,arguments);g()};w.addEventListener("popstate",g);' +
  'w.sluice=p;g();for(;q.length;)p.apply(w,q.shift())})(window,document,navigator,location)'

export function trackerRoute(app: Hono) {
  app.get('/t.js', (c) =>
    c.body(TRACKER_JS, 200, {
      'Content-Type': 'application/javascript; charset=utf-8',
      'Cache-Control': 'public, max-age=3600',
      'Access-Control-Allow-Origin': '*',
    }),
  )
}
