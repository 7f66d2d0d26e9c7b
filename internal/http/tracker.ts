import type { Hono } from 'hono'

/**
 * The tracker snippet, served at /t.js. A site adds
 *   <script defer src="https://sluice.example.com/t.js" data-site="my-site"></script>
 * and each page view (including SPA route changes through history.pushState and popstate)
 * is sent with navigator.sendBeacon as text/plain, which needs no CORS preflight, or with
 * fetch(keepalive) where sendBeacon is missing or refuses. data-dnt="true" makes it send
 * nothing when the browser asks not to be tracked. The visitor id is random and kept in
 * localStorage; nothing else is stored.
 */
export const TRACKER_JS =
  '(function(w,d,n,l){var s=d.currentScript;if(!s)return;var e=new URL("/event",s.src).href,t=s.dataset.site,u;' +
  'if(s.dataset.dnt=="true"&&(n.doNotTrack=="1"||w.doNotTrack=="1"))return;' +
  'try{u=localStorage.sluice_uid||(localStorage.sluice_uid=Math.random().toString(36).slice(2)+Date.now().toString(36))}catch(x){}' +
  'function p(){var b=JSON.stringify({site_id:t,event_type:"pageview",path:l.pathname,user_id:u,timestamp:new Date().toISOString()});' +
  'n.sendBeacon&&n.sendBeacon(e,b)||fetch(e,{method:"POST",body:b,keepalive:true,headers:{"Content-Type":"text/plain"}})}' +
  'var h=history.pushState;history.pushState=function(){h.apply(this,arguments);p()};w.addEventListener("popstate",p);p()})(window,document,navigator,location)'

export function trackerRoute(app: Hono) {
  app.get('/t.js', (c) =>
    c.body(TRACKER_JS, 200, {
      'Content-Type': 'application/javascript; charset=utf-8',
      'Cache-Control': 'public, max-age=3600',
      'Access-Control-Allow-Origin': '*',
    }),
  )
}
