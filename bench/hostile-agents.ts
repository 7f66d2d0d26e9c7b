// Benchmark: crafted user agents against ua-parser-js's expressions, and what the API's reader
// (internal/enrich/user-agent.ts, with its guard) spends on them. Not a test: it measures and prints.
//   bun run bench:agents            # about a minute
//
// 1. Every regular expression of ua-parser-js's table, one at a time, against 512-character
//    strings made of one of its own words, a separator and a repeated filler: those that take
//    over a millisecond on one string (median of three timings) are printed, slowest first.
// 2. The reader, uncached, on the same kind of strings (one occurrence, or the word repeated
//    all along): the mean and the slowest.
// 3. The worst strings known, guarded (the reader) against unguarded (ua-parser-js alone).
import { UAParser } from 'ua-parser-js'
import { createAgentReader, MAX_USER_AGENT_LENGTH } from '../internal/enrich/user-agent.ts'

const source = await Bun.file(Bun.resolveSync('ua-parser-js', import.meta.dir)).text()
const table = source.slice(source.indexOf('var regexes = {'), source.indexOf('// Constructor'))
const expressions: RegExp[] = []
for (const [, literal] of table.matchAll(/^\s*(\/(?:\\.|\[(?:\\.|[^\]\n])*\]|[^/\n[])+\/[gimsuy]*)/gm)) {
  if (literal!.startsWith('//')) continue
  try {
    expressions.push(new Function(`return ${literal}`)() as RegExp)
  } catch {}
}
const words = (text: string) => new Set([...(text.match(/[a-z]{3,}/gi) ?? [])].map((w) => w.toLowerCase()))
const SEPARATORS = ['', '(', '/', ' ', ';', ' (', '; ', '()', '(a) ']
const FILLERS = [
  '1.1',
  '1.',
  'a.',
  '1 ',
  'a ',
  'a;',
  '1;',
  ' (',
  '(',
  'a/',
  '1/',
  '-1',
  '_1',
  'a',
  '1',
  '; ',
  ' ;',
  'x-',
  ' 1.1',
  ').',
  ') ',
  'a1',
  '1a',
  'a-',
  '. ',
  ' .',
  '0.0',
  'A',
  ' a',
  ',1',
  '1,',
  'a_',
  '/1',
  ';1',
  '; a',
  '1-',
]
const one = (word: string, sep: string, filler: string) =>
  (word + sep + filler.repeat(Math.ceil(MAX_USER_AGENT_LENGTH / filler.length))).slice(0, MAX_USER_AGENT_LENGTH)
const repeated = (word: string, sep: string, filler: string) => {
  const unit = `${word}${sep}${filler.repeat(Math.ceil(34 / filler.length))}-`
  return unit.repeat(Math.ceil(MAX_USER_AGENT_LENGTH / unit.length)).slice(0, MAX_USER_AGENT_LENGTH)
}
const ms = (f: () => unknown) => {
  const t = performance.now()
  f()
  return performance.now() - t
}
const median = (f: () => unknown, n: number) => {
  const t = Array.from({ length: n }, () => ms(f)).sort((a, b) => a - b)
  return t[Math.floor(n / 2)]!
}

console.log(`1. ${expressions.length} expressions of ua-parser-js ${UAParser.VERSION}, alone`)
const slow = new Map<string, [number, string]>()
for (const re of expressions) {
  for (const word of [...words(re.source), '']) {
    for (const sep of SEPARATORS) {
      for (const filler of FILLERS) {
        const text = one(word, sep, filler)
        let took = ms(() => re.exec(text))
        // A first call (compiling) or a collection can take a millisecond alone: time again.
        if (took > 1) took = median(() => re.exec(text), 3)
        if (took > 1 && took > (slow.get(re.source)?.[0] ?? 0)) slow.set(re.source, [took, text])
      }
    }
  }
}
for (const [re, [took, text]] of [...slow].sort((a, b) => b[1][0] - a[1][0])) {
  console.log(`   ${took.toFixed(1).padStart(7)} ms  /${re.slice(0, 70)}/  on ${JSON.stringify(text.slice(0, 24))}…`)
}

const read = createAgentReader(0)
let count = 0
let total = 0
let worst: [number, string] = [0, '']
for (const word of words(table)) {
  for (const sep of SEPARATORS) {
    for (const filler of FILLERS.slice(0, 14)) {
      for (const text of [one(word, sep, filler), repeated(word, sep, filler)]) {
        const took = ms(() => read(text))
        count++
        total += took
        if (took > worst[0]) worst = [took, text]
      }
    }
  }
}
console.log(
  `2. the reader, uncached, on ${count.toLocaleString('en-US')} such agents: mean ${(total / count).toFixed(3)} ms, slowest ${worst[0].toFixed(2)} ms once (${JSON.stringify(worst[1].slice(0, 24))}…; timed 5 times again, median ${median(() => read(worst[1]), 5).toFixed(3)} ms)`,
)

console.log('3. known worst agents, median ms: the reader (guarded) / ua-parser-js alone')
const KNOWN: Record<string, string> = {
  'archos + 505 digits': one('archos ', '', '1'),
  'archos + 40 digits, repeated': ('archos ' + '1'.repeat(40) + '-').repeat(20).slice(0, MAX_USER_AGENT_LENGTH),
  'naver( + 1.1 repeated, no )': one('x naver(', '', '1.1'),
  'naver() + 1.1 repeated': one('x naver()', '', '1.1'),
  'a real Chrome': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
}
for (const [name, text] of Object.entries(KNOWN)) {
  console.log(`   ${name.padEnd(30)} ${median(() => read(text), 9).toFixed(3)} / ${median(() => new UAParser(text).getResult(), 3).toFixed(3)}`)
}
