"""Synthetic lead sources with planted, known truth.

`generate(out_dir, n_leads, seed)` writes three lead sources (a Salesforce-style SQLite CRM, a
HubSpot-style Parquet export and a Latin-1 trade-show CSV), their engagement touches, the owners
table, closed-deal outcomes, a `sources.yaml` that maps all of it onto the contracts, and
`truth.parquet`: one row per lead source row saying which person it is, whether it is a duplicate,
what was planted in it (invalid, orphaned, stale, duplicate-for-credit, ...) and the latent
ripeness that drove its touches and its outcome.

The generative story, in order:

1. People get a latent ripeness r ~ Beta(1.2, 4.2): most are cool, a few are hot.
2. Each person has one first row; about 20% extra rows repeat an existing person (ripe people
   are likelier to come back), in the same source or another, with realistic variations.
3. One row per person (their CRM row, else their HubSpot row) carries the deal: it is won with
   probability sigmoid(-5.6 + 7.5 r + 1.2 fast_response + noise) and otherwise sometimes lost.
   Buyers mostly close after 5-12 touches; everyone else gets Poisson(1 + 7r)-ish touches whose
   kind (opens vs form fills, pricing page views, demo requests) and recency follow r.
4. Status, stage, owner, staleness and the planted garbage follow; the truth records it all.

Everything is vectorised with numpy/pandas/pyarrow; only small subsets (typos, nicknames) loop.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from unidecode import unidecode

from slowburn import contracts as C

__all__ = ["generate", "next_night", "VALUE_MAPS", "SYSTEMS", "SOURCE_NAMES"]

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

SYSTEMS = ("salesforce", "hubspot", "event_list")
SOURCE_NAMES = ("crm", "marketing", "events")
SOURCE_SHARE = np.array([0.55, 0.35, 0.10])
SF, HS, EV = 0, 1, 2
STR = pd.StringDtype("pyarrow")

# Contract enums as indices (order of contracts.LEAD_STATUSES etc.).
ST = {s: i for i, s in enumerate(C.LEAD_STATUSES)}
SG = {s: i for i, s in enumerate(C.LEAD_STAGES)}
LS = {s: i for i, s in enumerate(C.LEAD_SOURCES)}
TT = {s: i for i, s in enumerate(C.TOUCH_TYPES)}

# ---------------------------------------------------------------------------------------------
# Vendor value maps (vendor value -> contract value). Written into sources.yaml `values:`.
# ---------------------------------------------------------------------------------------------
CRM_STATUS = {
    "Open - Not Contacted": "new", "Working - Contacted": "working", "Nurturing": "nurturing",
    "Qualified": "qualified", "Unqualified": "unqualified", "Closed - Converted": "converted",
    "Closed - Not Converted": "closed",
}
CRM_STAGE = {"Inquiry": "inquiry", "MQL": "mql", "SQL": "sql", "Opportunity": "opportunity",
             "Customer": "customer", "Disqualified": "disqualified"}
CRM_LEAD_SOURCE = {"Web Form": "form_fill", "Website Visit": "target_page", "Email Campaign": "email",
                   "Trade Show": "event", "Purchased List": "purchased_list", "Rep Created": "rep_created",
                   "Other": "other"}
HS_STATUS = {"NEW": "new", "OPEN": "working", "IN_PROGRESS": "working", "ATTEMPTED_TO_CONTACT": "working",
             "CONNECTED": "qualified", "BAD_TIMING": "nurturing", "UNQUALIFIED": "unqualified"}
HS_STAGE = {"subscriber": "inquiry", "lead": "inquiry", "marketingqualifiedlead": "mql",
            "salesqualifiedlead": "sql", "opportunity": "opportunity", "customer": "customer"}
HS_SOURCE = {"DIRECT_TRAFFIC": "form_fill", "ORGANIC_SEARCH": "target_page", "PAID_SEARCH": "target_page",
             "EMAIL_MARKETING": "email", "OFFLINE": "purchased_list", "SOCIAL_MEDIA": "other",
             "REFERRALS": "other"}
TOUCH_EVENTS = {t: t for t in C.TOUCH_TYPES}
MEDIUMS = {m: m for m in ("web", "email", "phone", "event", "in_person")}
VALUE_MAPS = {
    "crm": {"status": CRM_STATUS, "stage": CRM_STAGE, "lead_source": CRM_LEAD_SOURCE},
    "marketing": {"status": HS_STATUS, "stage": HS_STAGE, "lead_source": HS_SOURCE},
    "engagement": {"touch_type": TOUCH_EVENTS, "channel": MEDIUMS},
}

# Contract value -> vendor values to render (first is the most common).
_CRM_STATUS_OUT = {"new": ["Open - Not Contacted"], "working": ["Working - Contacted"], "nurturing": ["Nurturing"],
                   "qualified": ["Qualified"], "unqualified": ["Unqualified"], "converted": ["Closed - Converted"],
                   "closed": ["Closed - Not Converted"]}
_HS_STATUS_OUT = {"new": ["NEW"], "working": ["IN_PROGRESS", "ATTEMPTED_TO_CONTACT", "OPEN"],
                  "nurturing": ["BAD_TIMING"], "qualified": ["CONNECTED"], "unqualified": ["UNQUALIFIED"],
                  "converted": ["CONNECTED"], "closed": ["UNQUALIFIED"]}
_CRM_STAGE_OUT = {v: [k] for k, v in CRM_STAGE.items()}
_HS_STAGE_OUT = {"inquiry": ["lead", "lead", "subscriber"], "mql": ["marketingqualifiedlead"],
                 "sql": ["salesqualifiedlead"], "opportunity": ["opportunity"], "customer": ["customer"],
                 "disqualified": ["lead"]}
_CRM_SOURCE_OUT = {v: [k] for k, v in CRM_LEAD_SOURCE.items()}
_HS_SOURCE_OUT = {"form_fill": ["DIRECT_TRAFFIC"], "target_page": ["ORGANIC_SEARCH", "PAID_SEARCH"],
                  "email": ["EMAIL_MARKETING"], "event": ["OFFLINE"], "purchased_list": ["OFFLINE"],
                  "rep_created": ["OFFLINE"], "other": ["SOCIAL_MEDIA", "REFERRALS"]}
UNKNOWN_STATUS = {SF: ["Pending Review", "Recycled", "Contacted"], HS: ["OPEN_DEAL", "RECYCLED"]}
BAD_DATES = ["31/02/2026", "yesterday", "2026-02-30T10:00:00.000+0000", "N/A", "0000-00-00 00:00:00",
             "2026-13-45"]

TOUCH_MEDIUM = {"form_fill": "web", "page_view": "web", "pricing_page_view": "web", "email_open": "email",
                "email_click": "email", "email_bounce": "email", "unsubscribe": "email", "call": "phone",
                "rep_email": "email", "meeting": "in_person", "demo_request": "web", "event_attended": "event"}

# ---------------------------------------------------------------------------------------------
# Pools
# ---------------------------------------------------------------------------------------------
_COMMON_FIRST = """
William Robert James John Michael David Richard Joseph Thomas Charles Christopher Daniel Matthew Anthony
Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan
Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander
Frank Patrick Raymond Jack Dennis Jerry Tyler Aaron Adam Nathan Henry Douglas Zachary Peter Kyle Ethan
Walter Noah Jeremy Christian Keith Roger Terry Gerald Harold Sean Austin Carl Arthur Lawrence Dylan Jesse
Jordan Bryan Bruce Gabriel Logan Albert Alan Juan Wayne Elijah Randy Roy Vincent Ralph Eugene Russell
Mason Philip Louis Harry Howard Fred Victor Martin Ernest Todd Craig Shawn Clarence Antonio Luis Stanley
Leonard Dale Manuel Rodney Curtis Norman Allen Marvin Glenn Travis Chad Melvin Alfred Francis Bradley
Herbert Frederick Joel Edwin Troy Randall Barry Bernard Mario Leroy Francisco Marcus Theodore Clifford
Miguel Calvin Lloyd Derek Warren Darrell Jerome Floyd Leo Alvin Wesley Gordon Dean Jorge Dustin Pedro
Derrick Lewis Corey Herman Maurice Vernon Roberto Clyde Hector Shane Ricardo Lester Brent Gilbert Gene
Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa Margaret Sandra
Ashley Kimberly Emily Donna Michelle Dorothy Carol Amanda Melissa Deborah Stephanie Rebecca Sharon Laura
Cynthia Kathleen Amy Shirley Angela Helen Anna Brenda Pamela Nicole Emma Samantha Katherine Christine
Debra Rachel Catherine Carolyn Janet Ruth Maria Heather Diane Virginia Julie Joyce Victoria Olivia Kelly
Christina Lauren Joan Evelyn Judith Megan Cheryl Andrea Hannah Martha Jacqueline Frances Gloria Ann Teresa
Kathryn Sara Janice Jean Alice Madison Doris Abigail Julia Judy Grace Denise Amber Marilyn Beverly Danielle
Theresa Sophia Marie Diana Brittany Natalie Isabella Charlotte Rose Alexis Kayla Lillian Tiffany Eleanor
Florence Valerie Allison Caroline Melanie Penelope Vanessa Veronica Wendy Yvonne Tracy Tamara Stacy Sylvia
Kristen Leah Lydia Molly Nora Paige Ruby Sadie Stella Tessa Whitney Zoe Priya Arjun Wei Mei Hiroshi Yuki
Aisha Omar Fatima Ahmed Kwame Olga Ivan Dmitri Lars Ingrid Sven Hans Klaus Pierre Luc Marco Giulia
Alessandro Raj Sanjay Deepak Ana Carlos Lucas Mateo Elena Sofia Anika Tariq Nadia Yusuf Leila Kenji Akira
"""
_ACCENTED_FIRST = """
José François Zoë Chloé Renée Inès Hélène André Jürgen Björn Søren Åsa Sébastien Jérôme Élodie Anaïs Raúl
Ramón Jesús Íñigo Noémie Joël Günter Jörg Stéphane Céline Amélie Frédéric Léa Clémence Mónica Sofía Lucía
Andrés Nicolás Óscar Iñaki Françoise Thérèse Agnès Maëlle Göran Mårten Jérémie Désirée Dörte Małgosia
"""
_REAL_LAST = """
Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Jackson Martin Lee
Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Hill Green Adams Baker
Nelson Carter Mitchell Roberts Turner Phillips Campbell Parker Evans Edwards Collins Stewart Morris Murphy
Cook Rogers Morgan Cooper Peterson Reed Bailey Bell Kelly Howard Ward Cox Richardson Wood Watson Brooks
Bennett Gray Hughes Price Sanders Myers Long Ross Foster Nguyen Patel Kim Chen Wang Singh Kumar Shah Khan
Ali Cohen Schwartz Rossi Russo Ferrari Bianchi O'Brien O'Connor McDonald MacLeod D'Angelo Smith-Jones
"""
_ACCENTED_LAST = """
García Martínez Rodríguez López Hernández González Pérez Sánchez Ramírez Álvarez Jiménez Muñoz Núñez Peña
Ibáñez Gómez Díaz Müller Schröder Schäfer Köhler Krüger Weiß Günther Böhm Jäger Lefèvre Dubois Fontaine
Girard Lemaître Bérard Chevalier Mercier Søndergaard Mårtensson Håkansson Björk Ångström Çelik Nørgaard
Öberg François Thérien Beaulieu-Lévesque
"""
_MULTIWORD_LAST = ["Van der Berg", "De la Cruz", "Le Brun", "St. John", "Ó Briain"]

_SUR_ONSETS = """Al Ash Bar Bel Ber Black Bran Brook Cal Car Chad Chal Dal Dar Den Dor Ed El Els Fair Fal Fen
Gar Gil Glen Gold Gran Ham Har Hart Hal Hol Hunt Kel Ken Kin Lan Lind Lock Mar Mel Mer Mor Nor Oak Pem
Pres Ral Red Rock Ros Sal Shel Stan Stock Tal Thorn Val War Wes Whit Win Wood Yar Bran Cor Dun Fitz Gal
Hav Kirk Lang Mal Nash Pen Quin Rad Sher Tam Ul Ver Wal Ab Bo Cu Da Fo Gu Ja Ko Lu Mo Ne Pa Ro Sa Ta Vo"""
_SUR_MIDDLES = ["", "a", "e", "i", "o", "u", "y", "en", "er", "in", "ing", "ley", "ber", "der", "ham", "ow", "el",
                "an", "ar", "is", "on", "or", "ett", "mar", "ven", "lan", "ras", "ton"]
_SUR_ENDINGS = """ton son ley field well wood man er by ham ford stead ridge worth more croft dale hurst ward
wick sby burn brook land ock cott ell ett ard ick berg stein mann ez ini elli ova sen strom quist ski ovic
ier eau oux ano ández ález ñez ère ière ström gård höfer bäck lund"""

_COMPANY_A = """Apex Arc Aster Atlas Aurora Beacon Birch Blue Bolt Bright Brook Canyon Cedar Cinder Clear Cloud
Cobalt Comet Copper Coral Crest Crystal Cypress Delta Drift Eagle Echo Ember Falcon Fern Field Flint Forge
Fox Frost Gale Garnet Glacier Globe Gold Granite Green Grove Harbor Hawk Haven Helix Horizon Indigo Iron
Ivy Jade Juniper Keystone Lake Lantern Laurel Ledger Lime Linden Lumen Lunar Maple Marble Meadow Mesa
Meteor Mint Mosaic Nimbus North Nova Oak Ocean Onyx Orbit Orchid Pacific Peak Pine Pioneer Pixel Polar
Prairie Prism Pulse Quartz Quest Radiant Rain Raven Redwood Ridge River Rock Sable Sage Sierra Silver Sky
Slate Solar Spark Spruce Star Stone Summit Swift Terra Thunder Tide Timber Titan True Union Vale Vector
Velvet Vertex Vista Willow Wind Zenith Acme Globex Initech Hooli Vandelay Umbrella Soylent Cyberdyne"""
_COMPANY_B = ["", "", "", "works", "soft", "logic", "labs", "ware", "point", "line", "bridge", "stack",
              "scale", "path", "gate", "wave", "core", "base", "mark", "shift", "sense", "loop", "view",
              "craft", "link", "net", "hub", "spring", "stream", "sight", "tech", "tron", "data", "metrics",
              "cast", "mind", "flow", "grid", "vault", "nest", "port", "ly", "ify", "io", "wise", "scope",
              "well", "frame", "signal", "rise", "wing", "way", "yard", "dock", "hive", "box", "byte", "sphere"]
_COMPANY_DESC = ["", "", "", "", "Systems", "Technologies", "Solutions", "Analytics", "Software", "Labs",
                 "Group", "Partners", "Consulting", "Networks", "Health", "Logistics", "Industries", "Media",
                 "Dynamics", "Capital"]
_SUFFIXES = {"US": ["Inc.", "LLC", "Corp.", "Inc", "Co.", ""], "GB": ["Ltd", "Ltd.", "PLC", "Limited", ""],
             "DE": ["GmbH", "AG", "GmbH & Co. KG", ""], "FR": ["SAS", "SA", "SARL", ""], "AU": ["Pty Ltd", ""]}
_LONG_SUFFIX = {"Inc.": "Incorporated", "Inc": "Incorporated", "Corp.": "Corporation", "Co.": "Company",
                "Ltd": "Limited", "Ltd.": "Limited", "Limited": "Ltd", "LLC": "L.L.C.", "PLC": "Plc",
                "GmbH": "G.m.b.H.", "AG": "Aktiengesellschaft", "GmbH & Co. KG": "GmbH & Co KG", "SAS": "S.A.S.",
                "SA": "S.A.", "SARL": "S.A.R.L.", "Pty Ltd": "Pty. Ltd."}

COUNTRIES = ("US", "GB", "DE", "FR", "AU")
_COUNTRY_SHARE = np.array([0.78, 0.07, 0.06, 0.06, 0.03])
_DIAL = {"US": "1", "GB": "44", "DE": "49", "FR": "33", "AU": "61"}
_TLD = {"US": [".com", ".com", ".com", ".io", ".co"], "GB": [".co.uk", ".com"], "DE": [".de", ".com"],
        "FR": [".fr", ".com"], "AU": [".com.au"]}
# Country as each source spells it.
_COUNTRY_TEXT = {
    SF: {"US": ["United States", "United States", "USA", "US"], "GB": ["United Kingdom", "UK"],
         "DE": ["Germany"], "FR": ["France"], "AU": ["Australia"]},
    HS: {"US": ["United States", "United States", "US"], "GB": ["United Kingdom", "GB"], "DE": ["Germany", "DE"],
         "FR": ["France", "FR"], "AU": ["Australia", "AU"]},
    EV: {"US": ["USA", "U.S.A.", "United States", "USA"], "GB": ["UK", "United Kingdom", "Great Britain"],
         "DE": ["Deutschland", "Germany"], "FR": ["France"], "AU": ["Australia"]},
}
# (city, state/region, postcode stem, area code, territory)
_CITIES = {
    "US": [("San Francisco", "CA", "941", "415", 0), ("Los Angeles", "CA", "900", "213", 0),
           ("San Diego", "CA", "921", "619", 0), ("San Jose", "CA", "951", "408", 0),
           ("Seattle", "WA", "981", "206", 0), ("Portland", "OR", "972", "503", 0),
           ("Denver", "CO", "802", "303", 0), ("Phoenix", "AZ", "850", "602", 0), ("Austin", "TX", "787", "512", 0),
           ("Dallas", "TX", "752", "214", 0), ("Houston", "TX", "770", "713", 0),
           ("Salt Lake City", "UT", "841", "801", 0), ("Las Vegas", "NV", "891", "702", 0),
           ("New York", "NY", "100", "212", 1), ("Brooklyn", "NY", "112", "718", 1), ("Boston", "MA", "021", "617", 1),
           ("Chicago", "IL", "606", "312", 1), ("Atlanta", "GA", "303", "404", 1), ("Miami", "FL", "331", "305", 1),
           ("Washington", "DC", "200", "202", 1), ("Philadelphia", "PA", "191", "215", 1),
           ("Pittsburgh", "PA", "152", "412", 1), ("Charlotte", "NC", "282", "704", 1),
           ("Raleigh", "NC", "276", "919", 1), ("Nashville", "TN", "372", "615", 1),
           ("Minneapolis", "MN", "554", "612", 1), ("Detroit", "MI", "482", "313", 1),
           ("Columbus", "OH", "432", "614", 1), ("Cleveland", "OH", "441", "216", 1),
           ("St. Louis", "MO", "631", "314", 1), ("Baltimore", "MD", "212", "410", 1),
           ("Newark", "NJ", "071", "973", 1), ("Tampa", "FL", "336", "813", 1), ("Orlando", "FL", "328", "407", 1),
           ("Indianapolis", "IN", "462", "317", 1), ("Kansas City", "MO", "641", "816", 1),
           ("Milwaukee", "WI", "532", "414", 1), ("Hartford", "CT", "061", "860", 1)],
    "GB": [("London", "England", "EC1A", "", 2), ("Manchester", "England", "M1", "", 2),
           ("Birmingham", "England", "B1", "", 2), ("Edinburgh", "Scotland", "EH1", "", 2),
           ("Bristol", "England", "BS1", "", 2), ("Leeds", "England", "LS1", "", 2)],
    "DE": [("Berlin", "Berlin", "101", "", 2), ("München", "Bayern", "803", "", 2),
           ("Hamburg", "Hamburg", "200", "", 2),
           ("Frankfurt am Main", "Hessen", "603", "", 2), ("Köln", "Nordrhein-Westfalen", "506", "", 2),
           ("Stuttgart", "Baden-Württemberg", "701", "", 2)],
    "FR": [("Paris", "Île-de-France", "750", "", 2), ("Lyon", "Auvergne-Rhône-Alpes", "690", "", 2),
           ("Marseille", "Provence-Alpes-Côte d'Azur", "130", "", 2), ("Toulouse", "Occitanie", "310", "", 2),
           ("Bordeaux", "Nouvelle-Aquitaine", "330", "", 2), ("Nantes", "Pays de la Loire", "440", "", 2)],
    "AU": [("Sydney", "NSW", "20", "", 3), ("Melbourne", "VIC", "30", "", 3), ("Brisbane", "QLD", "40", "", 3),
           ("Perth", "WA", "60", "", 3)],
}
_US_AREA_CODES = sorted({c[3] for c in _CITIES["US"]} | {"310", "646", "917", "650", "510", "425", "720", "469",
                                                          "281", "347", "781", "773", "678", "786", "571", "267"})
_STREETS = ["Main", "Oak", "Maple", "Market", "Mission", "Elm", "Park", "Washington", "Lake", "Hill", "Pine",
            "Cedar", "Sunset", "Madison", "Franklin", "Jefferson", "Church", "High", "Mill", "Spring", "River",
            "Union", "Howard", "Harrison", "Bryant", "Folsom", "Valencia", "Grand", "Lincoln", "Chestnut"]
_US_STREET_TYPES = ["St", "Ave", "Blvd", "Rd", "Way", "Street", "Avenue", "Drive"]
_DE_STREETS = ["Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Goethestraße", "Friedrichstraße", "Lindenallee"]
_FR_STREETS = ["rue de la Paix", "avenue des Champs-Élysées", "rue Victor Hugo", "boulevard Saint-Michel",
               "rue de Rivoli", "rue du Faubourg Saint-Honoré"]
_AU_STREETS = ["George St", "Collins St", "Queen St", "Hay St", "Pitt St"]

_TITLES = ["VP of Sales", "Director of Marketing", "Head of RevOps", "Revenue Operations Manager",
           "Marketing Operations Manager", "CMO", "CEO", "CTO", "Founder", "Sales Manager", "Account Executive",
           "Sales Development Representative", "Demand Generation Manager", "Growth Marketing Lead", "Data Analyst",
           "Data Engineer", "Software Engineer", "IT Director", "Operations Manager", "Procurement Specialist",
           "Office Manager", "Consultant", "Product Manager", "Customer Success Manager", "Head of Growth",
           "Director of Sales Operations", "Chief Revenue Officer", "Marketing Coordinator",
           "Business Development Manager", "VP Engineering", "Head of Data", "CFO", "COO", "Analyst", "Student"]
_FREE_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com"]
_FREE_SHARE = np.array([0.55, 0.17, 0.16, 0.12])
_PLUS_TAGS = ["webinar", "newsletter", "events", "work", "crm", "leads", "2025"]

_SHOWS = ["SaaStr Annual", "RevOps Summit", "B2B Marketing Expo", "Web Summit", "Dreamforce", "INBOUND",
          "Data Council", "MarTech Conference", "DMEXCO", "VivaTech", "Gartner Sales Summit", "Pavilion Summit"]
_SHOW_AGES = [705, 640, 575, 505, 440, 380, 315, 255, 190, 130, 70, 18]
_EMAIL_SERIES = ["Monthly Newsletter", "Product Update", "Nurture Track A", "Nurture Track B", "Webinar Invite"]
_FORMS = ["Website - Contact Us", "Ebook: The Lead Hygiene Playbook", "Webinar Registration", "Free Trial Signup",
          "Whitepaper: Pipeline Math"]
_UTMS = ["google-ads-brand", "google-ads-generic", "linkedin-ads", "newsletter-link", "organic", "g2-profile"]

_PHONE_FORMATS = {
    "US": ["(###) ###-####", "###.###.####", "+1 ### ### ####", "##########", "###-###-####", "+1##########",
           "+1 (###) ###-####", "1-###-###-####"],
    "GB": ["+44 #### ######", "+44##########", "+44 (0)#### ######", "0#### ######", "0##########"],
    "DE": ["+49 ### ########", "+49###########", "+49 (0)### ########", "0### ########", "0###/########"],
    "FR": ["+33 # ## ## ## ##", "+33#########", "0# ## ## ## ##", "0#.##.##.##.##"],
    "AU": ["+61 ### ### ###", "+61#########", "0### ### ###"],
}

# Touch-type mixtures for cold and hot people; a person's random touches mix them by ripeness.
_COLD_TOUCH = {"form_fill": .02, "page_view": .25, "pricing_page_view": .01, "email_open": .45,
               "email_click": .05, "call": .09, "rep_email": .10, "meeting": .01, "event_attended": .02}
_HOT_TOUCH = {"form_fill": .08, "page_view": .10, "pricing_page_view": .15, "email_open": .10, "email_click": .12,
              "call": .12, "rep_email": .10, "meeting": .10, "demo_request": .08, "event_attended": .05}
# Lead sources by ripeness (contract values, in LEAD_SOURCES order).
_COLD_SOURCE = np.array([.15, .15, .20, .05, .30, .08, .07])
_HOT_SOURCE = np.array([.45, .25, .15, .05, .03, .04, .03])


def _words(text: str) -> list[str]:
    return text.split()


@lru_cache(maxsize=1)
def name_pools() -> dict:
    """First names (common, then accented), surnames (real, accented, synthetic) and nicknames."""
    from nicknames import NickNamer

    common = list(dict.fromkeys(_words(_COMMON_FIRST)))
    accented = list(dict.fromkeys(w for w in _words(_ACCENTED_FIRST) if _latin1(w)))
    first = common + accented
    nn = NickNamer()
    pool_lower = {f.lower() for f in common}
    nicks = []
    for f in first:
        options = sorted(n for n in nn.nicknames_of(f) if n.isalpha() and len(n) >= 2 and n != f.lower())
        preferred = [n for n in options if n in pool_lower or len(n) <= 5]
        nicks.append(tuple(n.capitalize() for n in (preferred or options)))
    real = list(dict.fromkeys(_words(_REAL_LAST) + _MULTIWORD_LAST))
    accented_last = [w for w in dict.fromkeys(_words(_ACCENTED_LAST)) if _latin1(w)]
    synth = sorted({(o + m + e).capitalize() for o in _words(_SUR_ONSETS) for m in _SUR_MIDDLES
                    for e in _words(_SUR_ENDINGS)} - set(real) - set(accented_last))
    return {"first": first, "n_common_first": len(common), "nicknames": nicks,
            "last": real + accented_last + synth, "n_real_last": len(real), "n_accented_last": len(accented_last)}


def _latin1(s: str) -> bool:
    try:
        s.encode("latin-1")
        return True
    except UnicodeEncodeError:
        return False


def _ascii_key(s: str) -> str:
    return re.sub(r"[^a-z]", "", unidecode(s).lower())


# ---------------------------------------------------------------------------------------------
# Small vectorised helpers
# ---------------------------------------------------------------------------------------------
def _s(values) -> pd.Series:
    return pd.Series(values, dtype=STR)


def _pick(pool, idx) -> pd.Series:
    return _s(np.asarray(pool, dtype=object)[idx])


def _cat(rng, p, n) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _choose(rng, candidates: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """k distinct candidates (weighted without replacement via exponential keys)."""
    k = int(min(max(k, 0), len(candidates)))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    keys = rng.exponential(size=len(candidates))
    if weights is not None:
        keys = keys / np.maximum(weights, 1e-9)
    return np.sort(candidates[np.argpartition(keys, k - 1)[:k]])


def _digits_format(d: pd.Series, template: str) -> pd.Series:
    """Lay the digit string d out as template: each '#' takes the next digit."""
    out = d.str.slice(0, 0)
    pos = 0
    for part in re.findall(r"#+|[^#]+", template):
        if part[0] == "#":
            out = out + d.str.slice(pos, pos + len(part))
            pos += len(part)
        else:
            out = out + part
    return out


def _format_phones(rng, e164: np.ndarray, country: np.ndarray, avoid: np.ndarray | None = None) -> np.ndarray:
    """E.164 numbers laid out in one of the ways people type them in their country (other than `avoid`)."""
    n = len(e164)
    out = np.full(n, None, dtype=object)
    u = rng.random(n)
    for code in COUNTRIES:
        m = np.flatnonzero(country == code)
        if not len(m):
            continue
        fmts = _PHONE_FORMATS[code]
        digits = _s(e164[m]).str.slice(1 + len(_DIAL[code]))
        laid = np.array([_digits_format(digits, f).to_numpy(dtype=object, na_value=None) for f in fmts], dtype=object)
        fi = (u[m] * len(fmts)).astype(int)
        col = np.arange(len(m))
        chosen = laid[fi, col]
        if avoid is not None:
            chosen = np.where(chosen == avoid[m], laid[(fi + 1) % len(fmts), col], chosen)
        out[m] = chosen
    return out


def _rows_of(frame: pd.DataFrame, column: str, rows: np.ndarray) -> pd.Series:
    return frame[column].iloc[rows].reset_index(drop=True).astype(STR)


def _upper(s: pd.Series) -> pd.Series:
    """Upper case as people type it: Weiß -> WEISS (Arrow would write the rare capital sharp s)."""
    return s.str.upper().str.replace("\u1e9e", "SS", regex=False)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _sf_ids(prefix: str, nums: np.ndarray) -> np.ndarray:
    """18-character Salesforce ids: key prefix, pod, base62 counter and the case-safe suffix."""
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    suffix = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", dtype=np.uint8)
    n = len(nums)
    chars = np.empty((n, 18), dtype=np.uint8)
    chars[:, 0:3] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    chars[:, 3:5] = np.frombuffer(b"5e", dtype=np.uint8)
    chars[:, 5] = ord("0")
    x = np.asarray(nums, dtype=np.int64).copy()
    for pos in range(14, 5, -1):
        chars[:, pos] = alphabet[x % 62]
        x //= 62
    upper = (chars[:, :15] >= ord("A")) & (chars[:, :15] <= ord("Z"))
    weights = (1 << np.arange(5)).astype(np.int64)
    for k in range(3):
        chars[:, 15 + k] = suffix[(upper[:, 5 * k:5 * k + 5] * weights).sum(axis=1)]
    return chars.reshape(-1).view("S18").astype("U18").astype(object)


def _sf_time(ms: np.ndarray) -> pd.Series:
    """Salesforce API datetime text: 2026-03-01T12:00:00.000+0000 (null where ms is NaT/-1)."""
    ms = np.asarray(ms, dtype=np.int64)
    txt = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    out = _s(txt) + "+0000"
    return out.mask(ms < 0)


def _iso_z(ms: np.ndarray) -> pd.Series:
    ms = np.asarray(ms, dtype=np.int64)
    out = _s(np.datetime_as_string(ms.astype("datetime64[ms]").astype("datetime64[s]"), unit="s")) + "Z"
    return out.mask(ms < 0)


def _ts(ms: np.ndarray) -> pd.Series:
    ms = np.asarray(ms, dtype=np.int64)
    out = pd.Series(ms.astype("datetime64[ms]")).dt.tz_localize("UTC")
    return out.mask(ms < 0)


def _national_numbers(rng, cc: np.ndarray, area_city: np.ndarray) -> np.ndarray:
    """National significant numbers per country index; US numbers mostly use the city's area code."""
    n = len(cc)
    out = np.zeros(n, dtype=np.int64)
    us = cc == 0
    area_rand = np.array(_US_AREA_CODES, dtype=object)[rng.integers(0, len(_US_AREA_CODES), us.sum())]
    area = np.where(rng.random(us.sum()) < 0.7, area_city, area_rand).astype(np.int64)
    exch = rng.integers(200, 1000, us.sum())
    exch = np.where(exch % 100 == 11, exch + 1, exch)
    out[us] = area * 10**7 + exch * 10**4 + rng.integers(0, 10_000, us.sum())
    # Mobile ranges that phonenumbers accepts as valid for each country.
    for ci, prefixes, rest in ((1, [74, 75, 77, 78], 10**8),
                               (2, [151, 152, 157, 159, 160, 162, 170, 171, 172, 175, 176, 177, 179], 10**8),
                               (3, [60, 61, 62, 64, 65, 66, 67, 68, 73, 74, 75, 76, 77, 78], 10**7),
                               (4, [40, 41, 42, 43, 46], 10**7)):
        m = cc == ci
        pre = np.array(prefixes, dtype=np.int64)[rng.integers(0, len(prefixes), m.sum())]
        out[m] = pre * rest + rng.integers(0, rest, m.sum())
    return out


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------
def generate(out_dir: str | Path, n_leads: int, seed: int = 0, now: datetime | None = None) -> dict:
    """Write synthetic lead sources with planted truth into out_dir and return the manifest.

    Deterministic for the same (n_leads, seed, now). `now` defaults to today's midnight UTC and
    every timestamp written is at or before it.
    """
    if n_leads < 1:
        raise ValueError("n_leads must be at least 1")
    if now is None:
        now = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    g = _Generator(int(n_leads), int(seed), int(pd.Timestamp(now).tz_convert("UTC").value // 1_000_000))
    g.build()
    return g.write(out)


class _Generator:
    def __init__(self, n: int, seed: int, now_ms: int):
        self.n = n
        self.seed = seed
        self.now = now_ms
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 7_350_251]))
        self.pools = name_pools()

    # ------------------------------------------------------------------ build
    def build(self):
        self._companies()
        self._people()
        self._owners()
        self._rows()
        self._lifecycle()
        self._copies()
        self._ids()
        self._touches()
        self._render()
        self._plant_invalid()
        self._truth()

    # ------------------------------------------------------------------ companies
    def _companies(self):
        rng = self.rng
        n_people = self.n - int(round(0.2 * self.n))
        A = list(dict.fromkeys(_words(_COMPANY_A)))
        B = list(dict.fromkeys(_COMPANY_B))
        DESC = list(dict.fromkeys(_COMPANY_DESC))
        space = len(A) * len(B) * len(DESC)
        nc = int(max(min(30, n_people), min(n_people // 6, int(0.7 * space))))
        combo = rng.choice(space, size=nc, replace=False)
        a, rest = np.divmod(combo, len(B) * len(DESC))
        b, d = np.divmod(rest, len(DESC))
        cc = _cat(rng, _COUNTRY_SHARE, nc)
        city = (rng.random(nc) * np.array([len(_CITIES[COUNTRIES[c]]) for c in cc])).astype(int)
        suffix_pick = rng.random(nc)
        tld_pick = rng.random(nc)
        num = rng.integers(1, 2500, nc)
        street_pick = rng.integers(0, 1 << 30, nc)
        post = rng.integers(0, 100, nc)
        names, bases, domains, suffixes, streets, cities, states, posts, terr, area = ([] for _ in range(10))
        for i in range(nc):
            country = COUNTRIES[cc[i]]
            stem = A[a[i]] + B[b[i]]
            desc = DESC[d[i]]
            base = stem + (" " + desc if desc else "")
            sfx_pool = _SUFFIXES[country]
            sfx = sfx_pool[int(suffix_pick[i] * len(sfx_pool))]
            tlds = _TLD[country]
            domain = stem.lower() + ("-" + desc.lower() if desc else "") + tlds[int(tld_pick[i] * len(tlds))]
            cname, state, pstem, ac, t = _CITIES[country][city[i]]
            sp = street_pick[i]
            if country == "US":
                kind = _US_STREET_TYPES[(sp >> 5) % len(_US_STREET_TYPES)]
                street = f"{num[i]} {_STREETS[sp % len(_STREETS)]} {kind}"
                if sp % 3 == 0:
                    street += f", Suite {100 + (sp >> 9) % 900}"
                postcode = pstem + f"{post[i]:02d}"
                if state in ("CA", "WA", "OR", "CO", "AZ", "TX", "UT", "NV"):
                    t = 0
            elif country == "GB":
                street = f"{num[i] % 300 + 1} {_STREETS[sp % len(_STREETS)]} {'Street' if sp % 2 else 'Road'}"
                postcode = f"{pstem} {post[i] % 9 + 1}{chr(65 + sp % 26)}{chr(65 + (sp >> 5) % 26)}"
            elif country == "DE":
                street = f"{_DE_STREETS[sp % len(_DE_STREETS)]} {num[i] % 200 + 1}"
                postcode = pstem + f"{post[i]:02d}"
            elif country == "FR":
                street = f"{num[i] % 150 + 1} {_FR_STREETS[sp % len(_FR_STREETS)]}"
                postcode = pstem + f"{post[i] % 20 + 1:02d}"
            else:
                street = f"{num[i] % 400 + 1} {_AU_STREETS[sp % len(_AU_STREETS)]}"
                postcode = pstem + f"{post[i]:02d}"
            names.append(base + (" " + sfx if sfx else ""))
            bases.append(base)
            domains.append(domain)
            suffixes.append(sfx)
            streets.append(street)
            cities.append(cname)
            states.append(state)
            posts.append(postcode)
            terr.append(t)
            area.append(ac)
        # Variants a row may show instead of the canonical name.
        variants = []
        for base, sfx, name in zip(bases, suffixes, names):
            long = _LONG_SUFFIX.get(sfx, sfx)
            variants.append((
                name,                                              # 0 canonical
                base,                                              # 1 no suffix
                base.upper(),                                      # 2 ACME
                base + (" " + long if long else ""),               # 3 long suffix
                base + (", " + sfx if sfx else ""),                # 4 comma
                name.lower(),                                      # 5 lower case
            ))
        self.comp = {
            "n": nc, "country": cc, "name": np.array(names, dtype=object),
            "variants": np.array(variants, dtype=object).reshape(-1), "domain": np.array(domains, dtype=object),
            "street": np.array(streets, dtype=object), "city": np.array(cities, dtype=object),
            "state": np.array(states, dtype=object), "postcode": np.array(posts, dtype=object),
            "territory": np.array(terr, dtype=np.int8), "area": np.array(area, dtype=object),
        }
        seen: dict[str, int] = {}
        for i, dom in enumerate(domains):  # the rare stem clash (Star+line vs Starl+ine) gets a number
            if dom in seen:
                head, _, tail = dom.partition(".")
                domains[i] = f"{head}{i}.{tail}"
            seen[domains[i]] = i
        self.comp["domain"] = np.array(domains, dtype=object)

    # ------------------------------------------------------------------ people
    def _people(self):
        rng, pools = self.rng, self.pools
        P = self.n - int(round(0.2 * self.n))
        self.P = P
        nf, nfc = len(pools["first"]), pools["n_common_first"]
        nl, nreal, nacc = len(pools["last"]), pools["n_real_last"], pools["n_accented_last"]
        ripeness = rng.beta(1.2, 4.2, P)
        comp_w = rng.lognormal(0, 1.0, self.comp["n"])
        comp = rng.choice(self.comp["n"], size=P, p=comp_w / comp_w.sum())
        cc = self.comp["country"][comp]
        # First names: Zipf-ish over the common pool, accented names for ~10% (more in DE/FR).
        zipf = 1.0 / np.arange(1, nfc + 1) ** 0.35
        fn = rng.choice(nfc, size=P, p=zipf / zipf.sum())
        acc_p = np.where(np.isin(cc, [2, 3]), 0.45, 0.08)
        acc = rng.random(P) < acc_p
        fn[acc] = nfc + rng.integers(0, nf - nfc, acc.sum())
        # Surnames: 20% real (Zipf: Smith, Johnson, ... are common), 1.5% accented real (10% in DE/FR),
        # the rest synthetic (some accented too).
        u = rng.random(P)
        acc_last = u < np.where(np.isin(cc, [2, 3]), 0.10, 0.015)
        real_last = (~acc_last) & (u < np.where(np.isin(cc, [2, 3]), 0.30, 0.215))
        ln = nreal + nacc + rng.integers(0, nl - nreal - nacc, P)
        zr = 1.0 / np.arange(1, nreal + 1) ** 0.8
        ln[real_last] = rng.choice(nreal, size=real_last.sum(), p=zr / zr.sum())
        ln[acc_last] = nreal + rng.integers(0, nacc, acc_last.sum())
        self.pp = {"ripeness": ripeness, "comp": comp, "cc": cc, "fn": fn, "ln": ln,
                   "title": rng.integers(0, len(_TITLES), P)}
        self._plant_names()
        fn, ln = self.pp["fn"], self.pp["ln"]
        # Email addresses: corporate 65%, free mail 35%.
        fa = np.array([_ascii_key(x) or "x" for x in pools["first"]], dtype=object)
        la = np.array([_ascii_key(x) or "x" for x in pools["last"]], dtype=object)
        f = _pick(fa, fn)
        l_ = _pick(la, ln)
        f1, l1 = f.str.slice(0, 1), l_.str.slice(0, 1)
        free = rng.random(P) < 0.35
        pat = rng.integers(0, 5, P)
        nn = _s(rng.integers(1, 100, P).astype(str)).str.zfill(2)
        yr = _s(rng.integers(1960, 2004, P).astype(str))
        num = nn.where(rng.random(P) < 0.6, yr)
        corp_local = [f + "." + l_, f1 + l_, f, f + l1, f + "_" + l_]
        free_local = [f + "." + l_, f + l_, f + "." + l_ + num, f1 + l_ + num, f + "_" + l_ + num]
        local = corp_local[0].copy()
        for k in range(5):
            local = local.mask((pat == k) & ~free, corp_local[k])
            local = local.mask((pat == k) & free, free_local[k])
        fdom = _cat(rng, _FREE_SHARE, P)
        domain = _pick(self.comp["domain"], comp).mask(free, _pick(_FREE_DOMAINS, fdom))
        is_gmail = free & (fdom == 0)
        # Make every person's address distinct after gmail canonicalisation.
        for _ in range(10):
            key = local.mask(is_gmail, local.str.replace(".", "", regex=False)) + "@" + domain
            dup = key.duplicated().to_numpy()
            if not dup.any():
                break
            local = local.mask(dup, local + _s(rng.integers(2, 10_000, P).astype(str)))
        self.pp.update({"local": local, "domain": domain, "free": free, "gmail": is_gmail,
                        "f_ascii": f, "l_ascii": l_})
        # Phones: national significant numbers by country, distinct per person.
        nsn = np.zeros(P, dtype=np.int64)
        for _ in range(10):
            bad = np.ones(P, bool) if not nsn.any() else pd.Series(nsn).duplicated().to_numpy()
            if not bad.any():
                break
            nsn[bad] = self._nsn(cc[bad], comp[bad])
        # Shared corporate phones: 15% of people with a corporate email give their company's main line.
        main_line = self._nsn(self.comp["country"], np.arange(self.comp["n"]))
        shared = ~free & (rng.random(P) < 0.15)
        nsn = np.where(shared, main_line[comp], nsn)
        self.pp.update({"nsn": nsn, "shared_phone": shared, "optout": rng.random(P) < 0.04,
                        "bounced": rng.random(P) < np.where(free, 0.01, 0.035)})

    def _plant_names(self):
        """A few persons get the accented names the docs promise (José Müller, Zoë Lefèvre, ...)."""
        first, last = self.pools["first"], self.pools["last"]
        self._planted_names = [("José", "Müller"), ("Zoë", "Lefèvre"), ("François", "Núñez"), ("Jürgen", "Gómez")]
        self._planted_people = []
        for k, (f, l_) in enumerate(self._planted_names):
            if k >= self.P:
                break
            self._planted_people.append(k)
            self.pp["fn"][k] = first.index(f)
            self.pp["ln"][k] = last.index(l_)

    def _nsn(self, cc: np.ndarray, comp: np.ndarray) -> np.ndarray:
        return _national_numbers(self.rng, cc, self.comp["area"][comp[cc == 0]])

    # ------------------------------------------------------------------ owners
    def _owners(self):
        rng = self.rng
        n_own = max(8, int(round(self.n / 250)))
        share = np.array([0.33, 0.42, 0.19, 0.06])
        counts = np.maximum(2, np.round(share * n_own).astype(int))
        terr = np.repeat(np.arange(4), counts)
        m = len(terr)
        fn = rng.integers(0, self.pools["n_common_first"], m)
        ln = rng.integers(0, len(self.pools["last"]), m)
        first = np.array(self.pools["first"], dtype=object)[fn]
        last = np.array(self.pools["last"], dtype=object)[ln]
        name = _s(first) + " " + _s(last)
        email = _s([_ascii_key(a) for a in first]) + "." + _s([_ascii_key(b) for b in last])
        for _ in range(10):
            dup = email.duplicated().to_numpy()
            if not dup.any():
                break
            email = email.mask(dup, email + _s(rng.integers(2, 100, m).astype(str)))
        email = email + "@salesco.example"
        # ~15% deactivated, never the first owner of a territory.
        keep = np.r_[0, np.cumsum(counts)[:-1]]
        cand = np.setdiff1d(np.arange(m), keep)
        deact = np.zeros(m, bool)
        deact[_choose(rng, cand, max(1, int(round(0.15 * m))))] = True
        left = (self.now // DAY - rng.integers(5, 400, m)) * DAY + rng.integers(9, 18, m) * HOUR
        deact_at = np.where(deact, left, -1)
        team = _cat(rng, [0.45, 0.35, 0.20], m)
        cap = np.select([team == 0, team == 1], [rng.integers(40, 81, m), rng.integers(15, 36, m)],
                        rng.integers(25, 51, m))
        nums = 10_000_000 + np.cumsum(rng.integers(1, 40, m))
        ids = _sf_ids("005", nums)
        n_unknown = max(3, m // 20)
        unknown = _sf_ids("005", nums[-1] + 1_000_000 + np.cumsum(rng.integers(1, 40, n_unknown)))
        self.own = {"n": m, "id": ids, "name": name, "email": email, "active": ~deact, "deact_at": deact_at,
                    "team": np.array(["SDR", "Account Executive", "Inside Sales"], dtype=object)[team],
                    "territory": terr, "cap": cap, "unknown": unknown,
                    "active_by_terr": [np.flatnonzero((terr == t) & ~deact) for t in range(4)]}

    # ------------------------------------------------------------------ rows
    def _rows(self):
        rng, N, P, now = self.rng, self.n, self.P, self.now
        D = N - P
        r = self.pp["ripeness"]
        person = np.empty(N, dtype=np.int64)
        person[:P] = np.arange(P)
        w = 1 + 2 * r
        person[P:] = rng.choice(P, size=D, p=w / w.sum())
        src = np.empty(N, dtype=np.int8)
        src[:P] = _cat(rng, SOURCE_SHARE, P)
        src[self._planted_people] = EV  # the planted accented names sit in the event list
        same = rng.random(D) < 0.4
        src[P:] = np.where(same, src[person[P:]], _cat(rng, SOURCE_SHARE, D))
        # Created: people skew recent over two years; extra rows come later.
        age = np.maximum(730 * DAY * rng.random(P) ** 1.5, MINUTE).astype(np.int64)
        created = np.empty(N, dtype=np.int64)
        created[:P] = now - age
        first_c = created[person[P:]]
        later = first_c + (rng.exponential(60, D) * DAY).astype(np.int64)
        fallback = first_c + ((now - first_c) * rng.random(D)).astype(np.int64)
        created[P:] = np.where(later < now - MINUTE, later, fallback)
        # Trade-show rows are scanned on show days.
        today = now // DAY * DAY
        jitter = rng.integers(-4, 5, len(_SHOW_AGES))
        self.show_ms = np.array([today - (a + j) * DAY for a, j in zip(_SHOW_AGES, jitter)], dtype=np.int64)
        years = [str(np.datetime64(int(s), "ms").astype("datetime64[Y]")) for s in self.show_ms]
        self.show_name = [f"{nm} {y}" for nm, y in zip(_SHOWS, years)]
        self.show_code = [(nm.split()[0][:4] + "".join(w[0] for w in nm.split()[1:]) + y[2:]).upper()
                          for nm, y in zip(_SHOWS, years)]
        ev = src == EV
        j = np.clip(np.searchsorted(self.show_ms, created[ev], side="right") - 1, 0, len(self.show_ms) - 1)
        show = np.full(N, -1, dtype=np.int64)
        show[ev] = j
        created[ev] = self.show_ms[j] + 8 * HOUR + (rng.random(ev.sum()) * 10 * HOUR).astype(np.int64)
        self.row = {"person": person, "src": src, "created": created, "show": show}
        self._order_rows()
        # Rep-created duplicates of a marketing lead: a CRM row by a different rep, days later.
        fr = self.first_row[person]
        cand = (~self.is_first) & (src == SF) & (src[fr] == HS) & (now - created[fr] > 2 * HOUR)
        credit = cand & (rng.random(N) < 0.45)
        shift = (rng.uniform(0.05, 10, N) * DAY).astype(np.int64)
        created[credit] = np.minimum(created[fr][credit] + shift[credit], now - MINUTE)
        self.row["credit"] = credit
        self._order_rows()

    def _order_rows(self, copy_flag: np.ndarray | None = None):
        person, created = self.row["person"], self.row["created"]
        N = self.n
        keys = [np.arange(N), created, person] if copy_flag is None else [np.arange(N), copy_flag, created, person]
        order = np.lexsort(keys)
        ps = person[order]
        start = np.r_[True, ps[1:] != ps[:-1]]
        is_first = np.zeros(N, bool)
        is_first[order[start]] = True
        grp = np.cumsum(start) - 1
        rank = np.empty(N, dtype=np.int64)
        rank[order] = np.arange(N) - np.flatnonzero(start)[grp]
        first_row = np.full(self.P, -1, dtype=np.int64)
        first_row[ps[start]] = order[start]
        self.is_first, self.dup_rank, self.first_row = is_first, rank, first_row

    # ------------------------------------------------------------------ lifecycle
    def _lifecycle(self):
        rng, N, now = self.rng, self.n, self.now
        R = self.row
        person, src, created = R["person"], R["src"], R["created"]
        r = self.pp["ripeness"][person]
        age = now - created
        # The deal row: the person's earliest CRM row, else their earliest HubSpot row.
        pri = np.where(src == EV, 9, src).astype(np.int64)
        order = np.lexsort((np.arange(N), created, pri, person))
        ps = person[order]
        start = np.r_[True, ps[1:] != ps[:-1]]
        deal = np.zeros(N, bool)
        deal[order[start]] = True
        deal &= (src != EV) & (age >= 21 * DAY)
        fast = deal & (rng.random(N) < 0.3)
        logit = -5.6 + 7.5 * r + 1.2 * fast + rng.normal(0, 0.6, N)
        won = deal & (rng.random(N) < _sigmoid(logit))
        lost = deal & ~won & (rng.random(N) < 0.08 + 0.3 * r)
        # Status (contract values) by age and ripeness.
        young = age < 14 * DAY
        p_young = np.array([.55, .28, .07, .03, .05, 0, .02])
        p_old = np.array([.07, .16, .34, .05, .24, 0, .14])
        base = np.where(young[:, None], p_young, p_old).astype(np.float32)
        base[:, ST["qualified"]] += (0.12 * r).astype(np.float32)
        base /= base.sum(axis=1, keepdims=True)
        status = (rng.random(N)[:, None] > np.cumsum(base, axis=1)).sum(axis=1).astype(np.int8)
        status = np.minimum(status, 6)
        status[src == EV] = ST["new"]
        status[(src == HS) & (status == ST["closed"])] = ST["unqualified"]
        status[won] = ST["converted"]
        status[lost] = ST["closed"]
        lag = won & (rng.random(N) < 0.05)
        status[lag] = np.where(rng.random(lag.sum()) < 0.5, ST["working"], ST["qualified"])
        status[won & (src == HS)] = ST["qualified"]
        status[lost & (src == HS)] = ST["unqualified"]
        # Owners by territory; rep-created duplicates belong to a different rep than the marketing lead.
        terr = self.comp["territory"][self.pp["comp"][person]]
        owner = np.full(N, -1, dtype=np.int64)
        has_owner = src != EV
        for t in range(4):
            act = self.own["active_by_terr"][t]
            m = has_owner & (terr == t)
            owner[m] = act[rng.integers(0, len(act), m.sum())]
        credit = R["credit"]
        fr = self.first_row[person]
        clash = credit & (owner == owner[fr])
        for t in range(4):
            act = self.own["active_by_terr"][t]
            m = clash & (terr == t)
            if m.any() and len(act) > 1:
                pos = np.searchsorted(act, owner[m])
                owner[m] = act[(pos + 1) % len(act)]
        # A territory with one active rep cannot give the copy another owner: then it is no credit grab.
        credit &= owner != owner[fr]
        # Orphans: ~5% of all rows, among CRM/HubSpot rows that carry no deal.
        orphan_reason = np.zeros(N, dtype=np.int8)  # 0 none, 1 no owner, 2 unknown owner, 3 deactivated owner
        cand = np.flatnonzero(has_owner & ~deal & ~credit)
        orph = _choose(rng, cand, int(round(0.05 * N)))
        kind = _cat(rng, [0.35, 0.25, 0.40], len(orph)) + 1
        orphan_reason[orph] = kind
        owner[orph[kind == 1]] = -1
        unk = orph[kind == 2]
        owner[unk] = self.own["n"] + rng.integers(0, len(self.own["unknown"]), len(unk))
        dea = orph[kind == 3]
        deact_ids = np.flatnonzero(~self.own["active"])
        owner[dea] = deact_ids[rng.integers(0, len(deact_ids), len(dea))]
        # Planted "qualified without being qualified": cold, never contacted, stage SQL.
        fq_cand = np.flatnonzero(has_owner & ~deal & (r < 0.15) & np.isin(status, [0, 1, 2]) & (orphan_reason == 0))
        false_q = np.zeros(N, bool)
        false_q[_choose(rng, fq_cand, int(round(0.01 * N)))] = True
        status[false_q] = ST["qualified"]
        # Worked rows get rep touches.
        worked = has_owner & (owner >= 0) & ~false_q & (
            np.isin(status, [ST["working"], ST["qualified"], ST["converted"], ST["closed"], ST["unqualified"]])
            | ((status == ST["nurturing"]) & (rng.random(N) < 0.5)))
        worked |= deal & (won | lost)
        fast = np.where(deal, fast, worked & (rng.random(N) < 0.25)) & worked
        # Stage follows status and ripeness.
        u = rng.random(N)
        stage = np.select(
            [status == ST["new"], status == ST["working"], status == ST["nurturing"], status == ST["qualified"],
             status == ST["unqualified"], status == ST["converted"], status == ST["closed"]],
            [np.where((r > 0.25) & (u < 0.3 + 0.6 * r), SG["mql"], SG["inquiry"]),
             np.where(u < 0.2 + 0.6 * r, SG["sql"], SG["mql"]),
             np.where(u < 0.6, SG["inquiry"], SG["mql"]),
             np.where(u < 0.7, SG["sql"], SG["opportunity"]),
             SG["disqualified"], SG["customer"],
             np.where(lost, SG["opportunity"], SG["disqualified"])]).astype(np.int8)
        stage[false_q] = SG["sql"]
        stage[lag] = SG["opportunity"]
        stage[won & (src == HS)] = SG["customer"]
        stage[src == EV] = SG["inquiry"]
        # Lead source (contract values), ripe people come in through forms and target pages.
        cdf_cold, cdf_hot = np.cumsum(_COLD_SOURCE), np.cumsum(_HOT_SOURCE)
        hot = rng.random(N) < r
        uu = rng.random(N)
        ls = np.where(hot, np.searchsorted(cdf_hot, uu * cdf_hot[-1]), np.searchsorted(cdf_cold, uu * cdf_cold[-1]))
        ls = np.minimum(ls, 6).astype(np.int8)
        ls[credit] = LS["rep_created"]
        ls[src == EV] = LS["event"]
        ls[(src == HS) & (ls == LS["rep_created"])] = LS["purchased_list"]  # HubSpot writes it as OFFLINE
        ls[self._credit_lookalikes(ls, owner, credit)] = LS["other"]
        # End of activity: closed rows at close, stale rows > 45 days ago, open rows recently.
        closed_like = np.isin(status, [ST["unqualified"], ST["converted"], ST["closed"]]) | won | lost
        dur = np.where(won, 10 + rng.gamma(2.5, 15, N), 5 + rng.gamma(2, 12, N)) * DAY
        end = np.minimum(created + dur.astype(np.int64), now - HOUR)
        open_ = np.isin(status, [ST[s] for s in C.OPEN_STATUSES]) & ~(won | lost)
        eligible = np.flatnonzero(open_ & (age > 60 * DAY))
        stale_t = np.zeros(N, bool)
        # Deals whose status was never moved on (HubSpot customers stay CONNECTED) go stale on their own.
        stale_anyway = ((won | lost) & np.isin(status, [ST[s] for s in C.OPEN_STATUSES]) & (age > 60 * DAY)
                        & (end < now - 45 * DAY))
        n_stale = int(round(0.10 * N)) - int(stale_anyway.sum())
        stale_t[_choose(rng, eligible, n_stale, weights=1.2 - r[eligible])] = True
        latest = now - 46 * DAY
        stale_end = created + ((latest - created) * rng.random(N) ** 2).astype(np.int64)
        recency = np.minimum(rng.exponential(2 + 25 * (1 - r)), 44) * DAY
        open_end = np.maximum(created + MINUTE, now - recency.astype(np.int64))
        end = np.where(closed_like, end, np.where(stale_t, stale_end, open_end))
        end = np.clip(end, created, now)
        closed_at = np.where(won | lost, np.minimum(end + (rng.random(N) * 2 * DAY).astype(np.int64), now), -1)
        # Touch counts.
        n_create = np.isin(ls, [LS["form_fill"], LS["target_page"], LS["email"], LS["event"]]).astype(np.int64)
        n_rep1 = worked.astype(np.int64)
        lam = (1.0 + 7.0 * r) * np.where(self.is_first, 1.0, 0.6) * np.where(src == EV, 0.7, 1.0)
        lam = lam * np.where((status == ST["new"]) & young, 0.4, 1.0) + 1.5 * lost
        k_rand = rng.poisson(lam)
        kc = _cat(rng, [0.02, 0.08, 0.80, 0.10], N)
        k_won = np.select([kc == 0, kc == 1, kc == 2], [np.ones(N, np.int64), rng.integers(2, 5, N),
                                                        rng.integers(5, 13, N)], rng.integers(13, 19, N))
        k_rand = np.where(won, np.maximum(k_won - n_create - n_rep1, 0), k_rand)
        need_recent = open_ & ~stale_t & (age > 45 * DAY)
        k_rand = np.where(need_recent, np.maximum(k_rand, 1), k_rand)
        k_rand = np.minimum(k_rand, 30)
        dnc = (src == SF) & (rng.random(N) < 0.03)
        R.update({"deal": deal, "won": won, "lost": lost, "fast": fast, "status": status, "stage": stage,
                  "lead_source": ls, "owner": owner, "orphan": orphan_reason, "false_q": false_q, "worked": worked,
                  "lag": lag, "stale_target": stale_t, "end": end, "closed_at": closed_at, "n_create": n_create,
                  "n_rep1": n_rep1, "k_rand": k_rand, "dnc": dnc, "copy_of": np.full(N, -1, dtype=np.int64)})

    def _credit_lookalikes(self, ls: np.ndarray, owner: np.ndarray, credit: np.ndarray) -> np.ndarray:
        """Unplanted rows that would meet the duplicate-for-credit definition by chance.

        The definition (slowburn.flags.duplicate_for_credit): a rep-created lead with an owner, created
        after a non-rep-created lead of the same person that someone else (or no one) owns. A random
        duplicate row can draw lead source 'rep_created' and land there; the caller gives those rows
        another lead source, so that the planted truth and the definition agree row for row.
        """
        R = self.row
        person, created = R["person"], R["created"]
        rep = np.flatnonzero((ls == LS["rep_created"]) & ~credit & (owner >= 0))
        mkt = np.flatnonzero(ls != LS["rep_created"])
        if not len(rep) or not len(mkt):
            return np.zeros(self.n, bool)
        a = pd.DataFrame({"person": person[rep], "row": rep, "created": created[rep], "owner": owner[rep]})
        b = pd.DataFrame({"person": person[mkt], "m_created": created[mkt], "m_owner": owner[mkt]})
        b = b[b["person"].isin(a["person"])]
        j = a.merge(b, on="person")
        hit = j[(j["m_created"] < j["created"]) & (j["m_owner"] != j["owner"])]["row"].unique()
        out = np.zeros(self.n, bool)
        out[hit] = True
        return out

    # ------------------------------------------------------------------ duplicate source ids
    def _copies(self):
        """A few CRM rows appear twice under one Id (an older version of the same record)."""
        rng, R = self.rng, self.row
        src = R["src"]
        a_cand = np.flatnonzero((src == SF) & ~self.is_first & ~R["deal"] & ~R["credit"])
        n_pairs = int(round(0.001 * self.n))
        a = _choose(rng, a_cand, n_pairs)
        b_cand = np.setdiff1d(np.flatnonzero((src == SF) & self.is_first), a)
        b = b_cand[rng.integers(0, len(b_cand), len(a))] if len(b_cand) else np.empty(0, np.int64)
        b = np.unique(b)
        a = a[:len(b)]
        for key, arr in R.items():
            if key in ("copy_of",):
                continue
            arr[a] = arr[b]
        R["copy_of"][a] = b
        R["k_rand"][a] = 0
        R["n_create"][a] = 0
        R["n_rep1"][a] = 0
        R["deal"][a] = False
        R["won"][a] = False
        R["lost"][a] = False
        R["closed_at"][a] = -1
        self.copy_a, self.copy_b = a, b
        self._order_rows(copy_flag=(R["copy_of"] >= 0).astype(np.int8))

    # ------------------------------------------------------------------ ids
    def _ids(self):
        rng, R, N = self.rng, self.row, self.n
        src, created = R["src"], R["created"]
        ids = np.empty(N, dtype=object)
        pos = np.zeros(N, dtype=np.int64)  # position in its source file/table (0-based)
        is_copy = (R["copy_of"] >= 0).astype(np.int8)
        for s in (SF, HS, EV):
            rows = np.flatnonzero(src == s)
            rows = rows[np.lexsort((rows, is_copy[rows], created[rows]))]
            pos[rows] = np.arange(len(rows))
            if s == SF:
                nums = 4_000_000 + np.cumsum(rng.integers(1, 30, len(rows)))
                ids[rows] = _sf_ids("00Q", nums)
            elif s == HS:
                nums = 1_000_000 + np.cumsum(rng.integers(1, 200, len(rows)))
                ids[rows] = nums.astype(str).astype(object)
            else:
                show = R["show"][rows]
                seq = np.zeros(len(rows), dtype=np.int64)
                for k in np.unique(show):
                    m = show == k
                    seq[m] = 1 + np.cumsum(rng.integers(1, 4, m.sum()))
                code = np.array(self.show_code, dtype=object)[show]
                ids[rows] = (_s(code) + "-" + _s(seq.astype(str)).str.zfill(5)).to_numpy(dtype=object)
            self.__dict__.setdefault("src_rows", {})[s] = rows
        ids[self.copy_a] = ids[self.copy_b]
        R["id"], R["pos"] = ids, pos

    # ------------------------------------------------------------------ touches
    def _touches(self):
        """Touches per row: a creation touch, a first rep touch for worked rows, then random ones.

        Kept as compact arrays (row, type, campaign code, time) sorted by time; written in chunks.
        """
        rng, R, N, now = self.rng, self.row, self.n, self.now
        r = self.pp["ripeness"][R["person"]]
        created, end = R["created"], R["end"]
        k = (R["n_create"] + R["n_rep1"] + R["k_rand"]).astype(np.int64)
        T = int(k.sum())
        row = np.repeat(np.arange(N, dtype=np.int32), k)
        offs = np.r_[0, np.cumsum(k)[:-1]]
        slot = (np.arange(T, dtype=np.int64) - offs[row]).astype(np.int32)
        del offs
        n_c = R["n_create"].astype(np.int32)[row]
        n_1 = R["n_rep1"].astype(np.int32)[row]
        kind = np.full(T, 2, dtype=np.int8)  # 0 creation touch, 1 first rep touch, 2 random
        kind[slot < n_c + n_1] = 1
        kind[slot < n_c] = 0
        del n_c, n_1
        types = np.empty(T, dtype=np.int8)
        ts = np.empty(T, dtype=np.int64)
        rep_codes = [TT["call"], TT["rep_email"], TT["meeting"]]
        to_marketing = np.arange(len(C.TOUCH_TYPES), dtype=np.int8)
        to_marketing[TT["call"]] = TT["page_view"]
        to_marketing[TT["rep_email"]] = TT["email_open"]
        to_marketing[TT["meeting"]] = TT["email_click"]
        # Creation touch: what brought the lead in.
        ic = np.flatnonzero(kind == 0)
        rc = row[ic]
        ls = R["lead_source"][rc]
        types[ic] = np.select(
            [ls == LS["form_fill"], ls == LS["target_page"], ls == LS["email"]],
            [TT["form_fill"], np.where(rng.random(len(ic)) < 0.4, TT["pricing_page_view"], TT["page_view"]),
             TT["email_click"]], TT["event_attended"])
        ts[ic] = created[rc]
        # First rep touch: within the hour for fast responders, hours to weeks otherwise.
        i1 = np.flatnonzero(kind == 1)
        r1 = row[i1]
        types[i1] = np.where((rng.random(len(i1)) < 0.65) & ~R["dnc"][r1], TT["call"], TT["rep_email"])
        delay = np.where(R["fast"][r1], rng.integers(60, 59 * 60, len(i1)) * 1000,
                         np.clip(np.exp(rng.normal(np.log(20), 1.2, len(i1))) * HOUR, 61 * MINUTE, 30 * DAY
                                 ).astype(np.int64))
        rep1_at = np.full(N, np.iinfo(np.int64).max, dtype=np.int64)
        rep1_at[r1] = np.minimum(created[r1] + delay, end[r1])
        ts[i1] = rep1_at[r1]
        del i1, r1, delay, ic, rc, ls
        # Random touches: a cold/hot mixture by ripeness; the last one lands at the row's end of activity.
        cold = np.zeros(len(C.TOUCH_TYPES))
        hot = np.zeros(len(C.TOUCH_TYPES))
        for name, p in _COLD_TOUCH.items():
            cold[TT[name]] = p
        for name, p in _HOT_TOUCH.items():
            hot[TT[name]] = p
        cdf_c, cdf_h = np.cumsum(cold) / cold.sum(), np.cumsum(hot) / hot.sum()
        ir = np.flatnonzero(kind == 2)
        del kind
        rr_ = row[ir]
        rp = r[rr_]
        u = rng.random(len(ir))
        t_ = np.where(rng.random(len(ir)) < rp, np.searchsorted(cdf_h, u, side="right"),
                      np.searchsorted(cdf_c, u, side="right"))
        t_ = np.minimum(t_, len(C.TOUCH_TYPES) - 1).astype(np.int8)
        t_ = np.where(R["worked"][rr_], t_, to_marketing[t_])
        uu = rng.random(len(ir)) ** (1.0 / (1.0 + 2.0 * rp))
        uu[slot[ir] == k[rr_] - 1] = 1.0
        c, e = created[rr_], end[rr_]
        tsr = c + ((e - c) * uu).astype(np.int64)
        del uu, u, rp, c
        rep = np.isin(t_, rep_codes)
        tsr = np.where(rep, np.maximum(tsr, np.minimum(rep1_at[rr_], e)), tsr)
        types[ir] = t_
        ts[ir] = tsr
        del ir, rr_, t_, tsr, e, rep, rep1_at
        np.minimum(ts, now, out=ts)
        # No calls to do-not-call leads; reps who left do not touch leads after they left.
        m = np.flatnonzero(types == TT["call"])
        types[m[R["dnc"][row[m]]]] = TT["rep_email"]
        deact = np.where(self.own["active"], np.iinfo(np.int64).max, self.own["deact_at"])
        deact = np.concatenate([deact, np.full(len(self.own["unknown"]), np.iinfo(np.int64).max)])
        m = np.flatnonzero(np.isin(types, rep_codes))
        o = R["owner"][row[m]]
        gone = m[(o >= 0) & (ts[m] > deact[np.maximum(o, 0)])]
        types[gone] = to_marketing[types[gone]]
        # Bounced people's mail bounces; opted-out people unsubscribed on their last marketing email.
        m = np.flatnonzero(np.isin(types, [TT["email_open"], TT["email_click"]]))
        types[m[self.pp["bounced"][R["person"][row[m]]]]] = TT["email_bounce"]
        optout_row = self._optout_rows()
        idx = np.flatnonzero(np.isin(types, [TT["email_open"], TT["email_click"], TT["email_bounce"]]))
        idx = idx[optout_row[row[idx]]]
        if len(idx):
            o = idx[np.lexsort((ts[idx], row[idx]))]
            rs = row[o]
            types[o[np.r_[rs[1:] != rs[:-1], True]]] = TT["unsubscribe"]
        del m, o, idx
        # Campaign codes into a small dictionary of names.
        months0 = np.datetime64(int(now - 800 * DAY), "ms").astype("datetime64[M]")
        month = (ts.astype("datetime64[ms]").astype("datetime64[M]") - months0).astype(np.int32)
        n_months = int(month.max()) + 1 if T else 1
        month_names = [str(months0 + i) for i in range(n_months)]
        camp_dict = [f"{s} {m}" for s in _EMAIL_SERIES for m in month_names]
        offsets = {}
        for key, names in (("form", _FORMS), ("utm", _UTMS), ("demo", ["Website - Book a Demo"]),
                           ("show", self.show_name), ("webinar", [f"Webinar {m}" for m in month_names]),
                           ("email_src", [f"Email Campaign {m}" for m in month_names])):
            offsets[key] = len(camp_dict)
            camp_dict += names
        camp = np.full(T, -1, dtype=np.int32)
        first = slot == 0
        email_t = np.isin(types, [TT["email_open"], TT["email_click"], TT["email_bounce"], TT["unsubscribe"]])
        m = np.flatnonzero(email_t)
        camp[m] = rng.integers(0, len(_EMAIL_SERIES), len(m)) * n_months + month[m]
        m = np.flatnonzero(email_t & first & (R["lead_source"][row] == LS["email"]))
        camp[m] = offsets["email_src"] + month[m]
        m = np.flatnonzero(types == TT["form_fill"])
        camp[m] = offsets["form"] + rng.integers(0, len(_FORMS), len(m))
        m = np.flatnonzero(np.isin(types, [TT["page_view"], TT["pricing_page_view"]]))
        camp[m] = np.where(rng.random(len(m)) < 0.4, -1, offsets["utm"] + rng.integers(0, len(_UTMS), len(m)))
        camp[types == TT["demo_request"]] = offsets["demo"]
        m = np.flatnonzero(types == TT["event_attended"])
        camp[m] = offsets["webinar"] + month[m]
        m = m[first[m] & (R["lead_source"][row[m]] == LS["event"])]
        show = R["show"][row[m]]
        show_for_ts = np.clip(np.searchsorted(self.show_ms, ts[m], side="right") - 1, 0, len(self.show_ms) - 1)
        camp[m] = offsets["show"] + np.where(show >= 0, show, show_for_ts)
        del month, email_t, first, m
        rep = np.isin(types, rep_codes)
        # Per-row stats (touches are still grouped by row here).
        self.tstats = self._touch_stats(row, ts, rep, k)
        del rep
        order = np.lexsort((slot, row, ts))
        del slot
        self.touch = {"row": row[order], "type": types[order], "camp": camp[order], "ts": ts[order],
                      "camp_dict": camp_dict}

    def _write_touches(self, path: Path, chunk: int = 1_000_000) -> int:
        R, tt = self.row, self.touch
        owners_all = pa.array(list(self.own["id"]) + list(self.own["unknown"]) + ["marketing"], type=pa.string())
        marketing = len(owners_all) - 1
        systems = pa.array(list(SYSTEMS))
        events = pa.array(list(C.TOUCH_TYPES))
        mediums = pa.array([TOUCH_MEDIUM[t] for t in C.TOUCH_TYPES])
        camps = pa.array(tt["camp_dict"], type=pa.string())
        ids = pa.array(R["id"], type=pa.string())
        is_rep = np.isin(np.arange(len(C.TOUCH_TYPES)), [TT["call"], TT["rep_email"], TT["meeting"]])
        schema = pa.schema([("system", pa.string()), ("lead_id", pa.string()), ("event", pa.string()),
                            ("medium", pa.string()), ("campaign", pa.string()),
                            ("ts", pa.timestamp("ms", tz="UTC")), ("actor", pa.string())])
        T = len(tt["ts"])
        with pq.ParquetWriter(path, schema) as writer:
            for i in range(0, max(T, 1), chunk):
                row = tt["row"][i:i + chunk]
                typ = tt["type"][i:i + chunk].astype(np.int64)
                camp = tt["camp"][i:i + chunk]
                actor = np.where(is_rep[typ], R["owner"][row], marketing)
                writer.write_table(pa.table({
                    "system": pc.take(systems, pa.array(R["src"][row].astype(np.int64))),
                    "lead_id": pc.take(ids, pa.array(row)),
                    "event": pc.take(events, pa.array(typ)),
                    "medium": pc.take(mediums, pa.array(typ)),
                    "campaign": pc.take(camps, pa.array(camp, mask=camp < 0)),
                    "ts": pa.array(tt["ts"][i:i + chunk].astype("datetime64[ms]"), type=pa.timestamp("ms", tz="UTC")),
                    "actor": pc.take(owners_all, pa.array(actor)),
                }, schema=schema))
        return T

    def _optout_rows(self) -> np.ndarray:
        R = self.row
        return self.pp["optout"][R["person"]] & (R["src"] != EV)

    def _touch_stats(self, row, ts, rep, k):
        N = self.n
        big = np.iinfo(np.int64).max
        has = k > 0
        starts = np.r_[0, np.cumsum(k)[:-1]][has]
        last = np.full(N, -1, dtype=np.int64)
        first_rep = np.full(N, -1, dtype=np.int64)
        if len(ts):
            last[has] = np.maximum.reduceat(ts, starts)
            fr = np.minimum.reduceat(np.where(rep, ts, big), starts)
            first_rep[has] = np.where(fr == big, -1, fr)
        return {"n": k.copy(), "n_rep": np.bincount(row[rep], minlength=N), "last": last, "first_rep": first_rep}

    # ------------------------------------------------------------------ render vendor rows
    def _render(self):
        rng, R, N, pools, pp = self.rng, self.row, self.n, self.pools, self.pp
        person = R["person"]
        src = R["src"]
        dup = ~self.is_first
        var: dict[str, np.ndarray] = {}
        fn_idx = pp["fn"][person]
        first = _pick(pools["first"], fn_idx)
        last = _pick(pools["last"], pp["ln"][person])
        # Nicknames (Bill for William).
        nick_opts = pools["nicknames"]
        has_nick = np.array([len(nick_opts[i]) > 0 for i in range(len(nick_opts))])[fn_idx]
        sel = np.flatnonzero(dup & has_nick & (rng.random(N) < 0.18))
        if len(sel):
            uu = rng.random(len(sel))
            first.iloc[sel] = [nick_opts[i][int(v * len(nick_opts[i]))] for i, v in zip(fn_idx[sel], uu)]
        var["nickname"] = np.isin(np.arange(N), sel)
        # Typos: drop or swap one character in the first or last name.
        for col_name, col, p in (("typo_first", first, 0.07), ("typo_last", last, 0.08)):
            sel = np.flatnonzero(dup & (rng.random(N) < p))
            if len(sel):
                a, b = rng.random(len(sel)), rng.random(len(sel))
                old = col.iloc[sel].tolist()
                new = [_typo(s, x, y) for s, x, y in zip(old, a, b)]
                col.iloc[sel] = new
                changed = np.array([o != n_ for o, n_ in zip(old, new)])
                var[col_name] = np.isin(np.arange(N), sel[changed])
            else:
                var[col_name] = np.zeros(N, bool)
        # Accents dropped (Muller for Müller).
        sel = np.flatnonzero(dup & (rng.random(N) < 0.12))
        if len(sel):
            old_f, old_l = first.iloc[sel].tolist(), last.iloc[sel].tolist()
            new_f, new_l = [unidecode(x) for x in old_f], [unidecode(x) for x in old_l]
            first.iloc[sel], last.iloc[sel] = new_f, new_l
            changed = np.array([a != b or c != d for a, b, c, d in zip(old_f, new_f, old_l, new_l)])
            var["ascii_fold"] = np.isin(np.arange(N), sel[changed])
        else:
            var["ascii_fold"] = np.zeros(N, bool)
        # Case: SMITH / smith (badge scanners shout).
        u = rng.random(N)
        upper = ((dup & (u < 0.05)) | ((src == EV) & (u < 0.12))) & ~np.isin(person, self._planted_people)
        lower = dup & (u >= 0.05) & (u < 0.08)
        first = first.mask(upper, _upper(first)).mask(lower, first.str.lower())
        last = last.mask(upper, _upper(last)).mask(lower, last.str.lower())
        var["name_case"] = upper | lower
        # Email.
        local = pp["local"].iloc[person].reset_index(drop=True)
        domain = pp["domain"].iloc[person].reset_index(drop=True)
        gmail = pp["gmail"][person]
        free = pp["free"][person]
        u = rng.random((6, N))
        personal = dup & ~free & (u[0] < 0.05)
        p_local = (pp["f_ascii"].iloc[person].reset_index(drop=True) + "."
                   + pp["l_ascii"].iloc[person].reset_index(drop=True) + _s((person % 997).astype(str)))
        local = local.mask(personal, p_local)
        domain = domain.mask(personal, "gmail.com")
        gm = gmail | personal
        dots = dup & gm & (u[1] < 0.35)
        has_dot = local.str.contains(".", regex=False).fillna(False).to_numpy()
        local = local.mask(dots & has_dot, local.str.replace(".", "", regex=False))
        local = local.mask(dots & ~has_dot, local.str.slice(0, 1) + "." + local.str.slice(1))
        plus = dup & gm & (u[2] < 0.3)
        tags = _pick(_PLUS_TAGS, rng.integers(0, len(_PLUS_TAGS), N))
        local = local.mask(plus, local + "+" + tags)
        gmx = dup & gm & (u[3] < 0.12)
        domain = domain.mask(gmx, "googlemail.com")
        email = local + "@" + domain
        ecase = dup & (u[4] < 0.10)
        email = email.mask(ecase & (u[5] < 0.5), email.str.upper()).mask(ecase & (u[5] >= 0.5), email.str.title())
        var.update({"email_personal": personal, "gmail_dots": dots, "email_plus_tag": plus, "googlemail": gmx,
                    "email_case": ecase})
        # Phone: a format per row, the same number.
        cc = pp["cc"][person]
        digits = _s(pp["nsn"][person].astype(str))
        fmt = rng.random(N)
        phone = _s(np.full(N, None, dtype=object))
        for ci, code in enumerate(COUNTRIES):
            fmts = _PHONE_FORMATS[code]
            fi = (fmt * len(fmts)).astype(int)
            for j, tmpl in enumerate(fmts):
                m = (cc == ci) & (fi == j)
                if m.any():
                    phone[m] = _digits_format(digits[m], tmpl)
        # Missing values.
        u = rng.random((4, N))
        no_phone_base = u[0] < np.select([src == SF, src == HS], [0.05, 0.15], 0.25)
        no_phone = no_phone_base | (dup & (u[1] < 0.10))
        no_email = (((src == SF) & (u[2] < 0.03)) | (dup & (u[3] < 0.08))) & ~no_phone
        # Sources without email: badge scans at events (name, company, phone) and purchased lists.
        purchased = R["lead_source"] == LS["purchased_list"]
        u_src = rng.random(N)
        no_email_source = ((src == EV) & (u_src < 0.4)) | (purchased & (u_src < 0.5))
        no_email |= no_email_source & ~no_phone
        phone = phone.mask(no_phone)
        email = email.mask(no_email)
        var["phone_missing"] = dup & no_phone
        var["email_missing"] = dup & no_email
        var["no_email_source"] = no_email_source & ~no_phone
        var["shared_phone"] = pp["shared_phone"][person] & ~no_phone
        # Company, title, address.
        comp = pp["comp"][person]
        u = rng.random((3, N))
        cvar = np.where(u[0] < np.where(dup, 0.30, 0.08) + np.where(src == EV, 0.2, 0), 1 + (u[1] * 5).astype(int), 0)
        company = _pick(self.comp["variants"], comp * 6 + cvar)
        var["company_variant"] = cvar > 0
        title_idx = pp["title"][person].copy()
        tchange = dup & (u[2] < 0.10)
        title_idx[tchange] = rng.integers(0, len(_TITLES), tchange.sum())
        var["title_changed"] = tchange & (title_idx != pp["title"][person])
        title = _pick(_TITLES, title_idx)
        title = title.mask(rng.random(N) < 0.05)
        dom = _pick(self.comp["domain"], comp)
        wv = rng.integers(0, 4, N)
        website = ("https://www." + dom).mask(wv == 1, "www." + dom).mask(wv == 2, "http://" + dom).mask(wv == 3, dom)
        website = website.mask(rng.random(N) < 0.1)
        addr_missing = rng.random(N) < np.where(src == HS, 0.3, 0.05)
        street = _pick(self.comp["street"], comp).mask(addr_missing)
        city = _pick(self.comp["city"], comp).mask(addr_missing & (rng.random(N) < 0.5))
        state = _pick(self.comp["state"], comp).mask(addr_missing)
        postcode = _pick(self.comp["postcode"], comp).mask(addr_missing)
        # Address typos on repeat rows: a dropped or swapped character in the street or city, swapped
        # postcode digits.
        u = rng.random((3, N))
        for k, (col_name, col, p) in enumerate((("typo_street", street, 0.08), ("typo_city", city, 0.04),
                                                ("typo_postcode", postcode, 0.03))):
            sel = np.flatnonzero(dup & col.notna().to_numpy() & (u[k] < p))
            var[col_name] = np.zeros(N, bool)
            if len(sel):
                old = col.iloc[sel].tolist()
                new = [_typo(v, x, y) if col_name != "typo_postcode" else _typo(v, x, 1.0)
                       for v, x, y in zip(old, rng.random(len(sel)), rng.random(len(sel)))]
                col.iloc[sel] = new
                var[col_name][sel[np.array([o != n_ for o, n_ in zip(old, new)])]] = True
        country = _s(np.full(N, None, dtype=object))
        cu = rng.random(N)
        for s in (SF, HS, EV):
            for ci, code in enumerate(COUNTRIES):
                opts = _COUNTRY_TEXT[s][code]
                m = (src == s) & (cc == ci)
                if m.any():
                    country[m] = _pick(opts, (cu[m] * len(opts)).astype(int)).to_numpy()
        self.L = pd.DataFrame({"first": first, "last": last, "email": email, "phone": phone, "company": company,
                               "title": title, "website": website, "street": street, "city": city, "state": state,
                               "postcode": postcode, "country": country})
        self.var = var
        # Vendor enum values.
        self.vstatus = self._vendor_enum(R["status"], C.LEAD_STATUSES, {SF: _CRM_STATUS_OUT, HS: _HS_STATUS_OUT})
        self.vstage = self._vendor_enum(R["stage"], C.LEAD_STAGES, {SF: _CRM_STAGE_OUT, HS: _HS_STAGE_OUT})
        self.vsource = self._vendor_enum(R["lead_source"], C.LEAD_SOURCES, {SF: _CRM_SOURCE_OUT, HS: _HS_SOURCE_OUT})
        # Modified: after the last activity or close, a few bulk-touched lately.
        last = self.tstats["last"]
        base = np.maximum(np.maximum(R["created"], last), R["closed_at"])
        mod = base + (rng.random(N) * 3 * DAY).astype(np.int64)
        bulk = rng.random(N) < 0.05
        mod = np.where(bulk, np.maximum(base, self.now - (rng.random(N) * 10 * DAY).astype(np.int64)), mod)
        self.modified = np.minimum(mod, self.now)
        # The opt-out flag as the row shows it: the CRM misses 10% (sync lag); the event list has none.
        self.optout_flag = pp["optout"][person] & (src != EV) & ((src != SF) | (rng.random(N) < 0.9))

    def _vendor_enum(self, values, names, out_maps):
        rng, N, src = self.rng, self.n, self.row["src"]
        res = np.full(N, None, dtype=object)
        u = rng.random(N)
        for s, mapping in out_maps.items():
            for i, name in enumerate(names):
                m = (src == s) & (values == i)
                if m.any():
                    opts = np.array(mapping[name], dtype=object)
                    res[m] = opts[(u[m] * len(opts)).astype(int)]
        return res

    # ------------------------------------------------------------------ invalid rows
    def _plant_invalid(self):
        rng, R, N, L = self.rng, self.row, self.n, self.L
        src = R["src"]
        reason = np.full(N, None, dtype=object)
        reason[self.copy_a] = "duplicate_source_id"
        reason[self.copy_b] = "duplicate_source_id"
        taken = reason != None  # noqa: E711
        self.bad_created = np.full(N, None, dtype=object)
        plan = [("malformed_email", 0.004, L["email"].notna().to_numpy()),
                ("unparseable_created_date", 0.003, src != HS),
                ("no_contact", 0.003, np.ones(N, bool)),
                ("unknown_status", 0.003, src != EV)]
        for name, share, ok in plan:
            cand = np.flatnonzero(ok & ~taken)
            pick = _choose(rng, cand, max(1, int(round(share * N))) if N >= 200 else 0)
            reason[pick] = name
            taken[pick] = True
            if name == "malformed_email":
                e = L["email"].iloc[pick]
                how = rng.integers(0, 4, len(pick))
                local = e.str.split("@").str[0]
                dom = e.str.split("@").str[1]
                bad = (local + "@@" + dom.str.replace(r"\.[^.]+$", "", regex=True)).where(
                    how == 0, (local + dom).where(how == 1, (local + "@" + dom.str.split(".").str[0]).where(
                        how == 2, local.str.slice(0, 3) + " " + local.str.slice(3) + "@" + dom)))
                L.loc[L.index[pick], "email"] = bad.to_numpy()
            elif name == "unparseable_created_date":
                self.bad_created[pick] = np.array(BAD_DATES, dtype=object)[rng.integers(0, len(BAD_DATES), len(pick))]
            elif name == "no_contact":
                L.loc[L.index[pick], ["email", "phone"]] = pd.NA
            elif name == "unknown_status":
                for s in (SF, HS):
                    m = pick[src[pick] == s]
                    opts = np.array(UNKNOWN_STATUS[s], dtype=object)
                    self.vstatus[m] = opts[rng.integers(0, len(opts), len(m))]
        self.invalid = reason
        # A duplicated Id is the same record exported twice: an older version, otherwise identical.
        a, b = self.copy_a, self.copy_b
        if len(a):
            L.iloc[a] = L.iloc[b].to_numpy()
            self.vstatus[a], self.vstage[a], self.vsource[a] = self.vstatus[b], self.vstage[b], self.vsource[b]
            for k in self.var:
                self.var[k][a] = self.var[k][b]
            older = self.modified[b] - (rng.uniform(1, 20, len(a)) * DAY).astype(np.int64)
            self.modified[a] = np.maximum(older, R["created"][b])
            same = self.modified[a] == self.modified[b]
            self.modified[a[same]] -= MINUTE

    # ------------------------------------------------------------------ truth
    def _truth(self):
        R, N, now, pp = self.row, self.n, self.now, self.pp
        person, src = R["person"], R["src"]
        ts = self.tstats
        a, b = self.copy_a, self.copy_b
        for key in ("n", "n_rep", "last", "first_rep"):
            ts[key][a] = ts[key][b]
        mapped = {}
        for name, vendor, maps in (("status", self.vstatus, (CRM_STATUS, HS_STATUS)),
                                   ("stage", self.vstage, (CRM_STAGE, HS_STAGE)),
                                   ("lead_source", self.vsource, (CRM_LEAD_SOURCE, HS_SOURCE))):
            out = np.full(N, None, dtype=object)
            for s, mp in zip((SF, HS), maps):
                m = src == s
                out[m] = pd.Series(vendor[m], dtype=object).map(mp).to_numpy(dtype=object)
            mapped[name] = out
        mapped["status"][src == EV] = "new"
        mapped["stage"][src == EV] = "inquiry"
        mapped["lead_source"][src == EV] = "event"
        status = mapped["status"]
        open_ = np.isin(status.astype(str), list(C.OPEN_STATUSES))
        last_act = np.where(ts["last"] >= 0, ts["last"], R["created"])
        # Stale as the unclosed flag defines it: an open status and no activity for 45 days. (A lost deal
        # whose status was never moved on can be younger than 60 days and still idle that long.)
        stale = open_ & (last_act < now - 45 * DAY)
        fast = (ts["first_rep"] >= 0) & (ts["first_rep"] - R["created"] <= HOUR)
        won_person = np.zeros(self.P, bool)
        won_person[person[R["won"]]] = True
        outcome = np.where(R["won"], "won", np.where(R["lost"], "lost", None))
        rng = self.rng
        amount = np.where(R["won"] | R["lost"], np.round(rng.lognormal(np.log(24_000), 0.9, N) / 50) * 50, np.nan)
        self.amount = amount
        owner = R["owner"]
        owner_ids = np.concatenate([self.own["id"], self.own["unknown"]])
        owner_id = np.where(owner >= 0, owner_ids[np.maximum(owner, 0)], None)
        varnames = list(self.var)
        vtxt = _s(np.full(N, "", dtype=object))
        for k in varnames:
            vtxt = vtxt + pd.Series(np.where(self.var[k], k + ";", ""), dtype=STR)
        vtxt = vtxt.str.rstrip(";").replace("", pd.NA)
        cc = pp["cc"][person]
        dial = np.array([_DIAL[c] for c in COUNTRIES], dtype=object)[cc]
        true_phone = "+" + _s(dial) + _s(pp["nsn"][person].astype(str))
        true_email = (pp["local"].iloc[person].reset_index(drop=True) + "@"
                      + pp["domain"].iloc[person].reset_index(drop=True)).str.lower()
        names = np.array(SOURCE_NAMES, dtype=object)[src]
        status_outdated = (R["won"] | R["lost"]) & open_
        cols = {
            "source_system": _pick(SYSTEMS, src),
            "source_name": _s(names),
            "source_id": _s(R["id"]),
            "row_number": R["pos"] + 1,
            "row_key": _s(names) + ":" + _s((R["pos"] + 1).astype(str)),
            "person_id": person,
            "company_id": pp["comp"][person],
            "is_duplicate": ~self.is_first,
            "dup_rank": self.dup_rank,
            "duplicate_for_credit": R["credit"],
            "variations": vtxt,
            "planted_invalid": _s(self.invalid),
            "duplicate_source_id_of": _s(np.where(R["copy_of"] >= 0, R["id"][np.maximum(R["copy_of"], 0)], None)),
            # Orphaned as the flag defines it: an open lead nobody active owns. Event-list rows
            # arrive unassigned, so they count too; a closed lead needs no owner.
            "planted_orphaned": open_ & ((R["orphan"] > 0) | (owner < 0)),
            "orphan_reason": _s(np.array([None, "no_owner", "unknown_owner", "deactivated_owner"],
                                         dtype=object)[R["orphan"]]),
            "planted_stale": stale,
            "planted_false_qualified": R["false_q"],
            "status_outdated": status_outdated,
            "ripeness": pp["ripeness"][person],
            "converted": won_person[person],
            "outcome": _s(outcome),
            "closed_at": _ts(R["closed_at"]),
            "amount": np.where(np.isnan(amount), np.nan, amount),
            "fast_response": fast,
            "n_touches": ts["n"],
            "n_rep_touches": ts["n_rep"],
            "first_rep_touch_at": _ts(ts["first_rep"]),
            "last_touch_at": _ts(ts["last"]),
            "created_at": _ts(R["created"]),
            "status": _s(mapped["status"]),
            "stage": _s(mapped["stage"]),
            "lead_source": _s(mapped["lead_source"]),
            "owner_id": _s(owner_id),
            "email_opt_out": pp["optout"][person],
            "email_opt_out_flag": self.optout_flag,
            "email_bounced": pp["bounced"][person],
            "do_not_call": R["dnc"],
            "country_code": _pick(COUNTRIES, cc),
            "true_first_name": _pick(self.pools["first"], pp["fn"][person]),
            "true_last_name": _pick(self.pools["last"], pp["ln"][person]),
            "true_email": true_email,
            "true_phone_e164": true_phone,
            "true_company": _pick(self.comp["name"], pp["comp"][person]),
        }
        # Rows in source order (source, row number), one column at a time to keep memory flat.
        perm = np.lexsort((R["pos"], src))
        for key in list(cols):
            v = cols[key]
            cols[key] = v.take(perm).reset_index(drop=True) if isinstance(v, pd.Series) else np.asarray(v)[perm]
        self.truth = pd.DataFrame(cols)
        self.owner_id = owner_id

    # ------------------------------------------------------------------ write
    def write(self, out: Path) -> dict:
        """Write every file; big frames are built one at a time and dropped once written."""
        R, N = self.row, self.n
        src = R["src"]
        files = {}
        # Truth first (then dropped), sorted like the sources.
        t = self.truth
        counts = {
            "leads": int(N),
            "crm": int((src == SF).sum()), "marketing": int((src == HS).sum()), "events": int((src == EV).sum()),
            "people": int(t["person_id"].nunique()),
            "duplicates": int(t["is_duplicate"].sum()),
            "duplicate_for_credit": int(t["duplicate_for_credit"].sum()),
            "invalid": int(t["planted_invalid"].notna().sum()),
            "invalid_by_reason": {k: int(v) for k, v in t["planted_invalid"].value_counts().sort_index().items()},
            "orphaned": int(t["planted_orphaned"].sum()),
            "stale": int(t["planted_stale"].sum()),
            "false_qualified": int(t["planted_false_qualified"].sum()),
            "touches": int(len(self.touch["ts"])),
            "owners": int(self.own["n"]), "owners_deactivated": int((~self.own["active"]).sum()),
            "outcomes": int((R["won"] | R["lost"]).sum()), "won": int(R["won"].sum()), "lost": int(R["lost"].sum()),
            "converted_people": int(t.loc[t["converted"], "person_id"].nunique()),
        }
        files["truth"] = out / "truth.parquet"
        pq.write_table(pa.Table.from_pandas(t, preserve_index=False), files["truth"])
        del t
        self.truth = None
        files["touches"] = out / "touches.parquet"
        self._write_touches(files["touches"])
        self.touch = None
        files["crm"] = self._write_crm(out / "crm.db")
        files["marketing"] = self._write_marketing(out / "marketing_leads.parquet")
        files["events"] = self._write_events(out / "event_list.csv")
        self.L = None
        # Owners.
        o = self.own
        owners = pd.DataFrame({
            "owner_id": o["id"], "name": o["name"], "email": o["email"],
            "active": np.where(o["active"], "true", "false"),
            "deactivated_at": _iso_z(o["deact_at"]).fillna(""),
            "team": o["team"],
            "territory": np.array(["NA-West", "NA-East", "EMEA", "APAC"], dtype=object)[o["territory"]],
            "daily_capacity": o["cap"],
        })
        files["owners"] = out / "owners.csv"
        owners.to_csv(files["owners"], index=False, lineterminator="\n")
        # Outcomes.
        m = np.flatnonzero(R["won"] | R["lost"])
        m = m[np.lexsort((m, R["closed_at"][m]))]
        outcomes = pd.DataFrame({
            "source_system": np.array(SYSTEMS, dtype=object)[src[m]], "source_id": R["id"][m],
            "outcome": np.where(R["won"][m], "won", "lost"), "closed_at": _iso_z(R["closed_at"][m]),
            "amount": self.amount[m],
        })
        files["outcomes"] = out / "outcomes.csv"
        outcomes.to_csv(files["outcomes"], index=False, lineterminator="\n", float_format="%.2f")
        files["sources"] = out / "sources.yaml"
        files["sources"].write_text(sources_yaml(), encoding="utf-8")
        files["manifest"] = out / "manifest.json"
        manifest = {"out_dir": str(out.resolve()), "files": {k: str(Path(v).resolve()) for k, v in files.items()},
                    "counts": counts, "seed": self.seed, "n_leads": N,
                    "now": pd.Timestamp(self.now, unit="ms", tz="UTC").isoformat()}
        files["manifest"].write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return manifest

    def _write_crm(self, path: Path) -> Path:
        R, L = self.row, self.L
        rows = self.src_rows[SF]
        created_txt = _sf_time(R["created"][rows])
        bad = self.bad_created[rows]
        created_txt = created_txt.mask(bad != None, pd.Series(bad, dtype=STR))  # noqa: E711
        crm = pd.DataFrame({
            "Id": _s(R["id"][rows]), "FirstName": _rows_of(L, "first", rows),
            "LastName": _rows_of(L, "last", rows), "Email": _rows_of(L, "email", rows),
            "Phone": _rows_of(L, "phone", rows), "Company": _rows_of(L, "company", rows),
            "Title": _rows_of(L, "title", rows), "Website": _rows_of(L, "website", rows),
            "Street": _rows_of(L, "street", rows), "City": _rows_of(L, "city", rows),
            "State": _rows_of(L, "state", rows), "PostalCode": _rows_of(L, "postcode", rows),
            "Country": _rows_of(L, "country", rows), "OwnerId": _s(self.owner_id[rows]),
            "Status": _s(self.vstatus[rows]), "Stage__c": _s(self.vstage[rows]),
            "LeadSource": _s(self.vsource[rows]), "CreatedDate": created_txt,
            "LastModifiedDate": _sf_time(self.modified[rows]), "LastActivityDate": _sf_time(self.tstats["last"][rows]),
            "HasOptedOutOfEmail": self.optout_flag[rows].astype(np.int64), "DoNotCall": R["dnc"][rows].astype(np.int64),
        })
        return self._write_sqlite(path, crm)

    def _write_marketing(self, path: Path) -> Path:
        R, L = self.row, self.L
        rows = self.src_rows[HS]
        hs = pd.DataFrame({
            "hs_object_id": _s(R["id"][rows]), "firstname": _rows_of(L, "first", rows),
            "lastname": _rows_of(L, "last", rows), "email": _rows_of(L, "email", rows),
            "phone": _rows_of(L, "phone", rows), "company": _rows_of(L, "company", rows),
            "jobtitle": _rows_of(L, "title", rows), "website": _rows_of(L, "website", rows),
            "address": _rows_of(L, "street", rows), "city": _rows_of(L, "city", rows),
            "state": _rows_of(L, "state", rows), "zip": _rows_of(L, "postcode", rows),
            "country": _rows_of(L, "country", rows), "hubspot_owner_id": _s(self.owner_id[rows]),
            "hs_lead_status": _s(self.vstatus[rows]), "lifecyclestage": _s(self.vstage[rows]),
            "hs_analytics_source": _s(self.vsource[rows]), "createdate": _ts(R["created"][rows]),
            "lastmodifieddate": _ts(self.modified[rows]), "notes_last_updated": _ts(self.tstats["last"][rows]),
            "hs_email_optout": self.optout_flag[rows],
        })
        pq.write_table(pa.Table.from_pandas(hs, preserve_index=False), path)
        return path

    def _write_events(self, path: Path) -> Path:
        R, L = self.row, self.L
        rows = self.src_rows[EV]
        scanned = _s(np.datetime_as_string(R["created"][rows].astype("datetime64[ms]").astype("datetime64[s]"),
                                           unit="s")).str.replace("T", " ", regex=False)
        bad = self.bad_created[rows]
        scanned = scanned.mask(bad != None, pd.Series(bad, dtype=STR))  # noqa: E711
        evdf = pd.DataFrame({
            "Badge ID": _s(R["id"][rows]), "First Name": _rows_of(L, "first", rows),
            "Last Name": _rows_of(L, "last", rows), "E-mail": _rows_of(L, "email", rows),
            "Telephone": _rows_of(L, "phone", rows), "Organisation": _rows_of(L, "company", rows),
            "Job Title": _rows_of(L, "title", rows), "Country": _rows_of(L, "country", rows),
            "Scanned At": scanned,
        })
        evdf.to_csv(path, index=False, encoding="latin-1", errors="strict", lineterminator="\n")
        return path

    @staticmethod
    def _write_sqlite(path: Path, df: pd.DataFrame) -> Path:
        for p in (path, path.with_name(path.name + "-journal")):
            if p.exists():
                p.unlink()
        types = {c: ("INTEGER" if c in ("HasOptedOutOfEmail", "DoNotCall") else "TEXT") for c in df.columns}
        con = sqlite3.connect(path)
        try:
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
            cols = ", ".join(f'"{c}" {t}' for c, t in types.items())
            con.execute(f'CREATE TABLE "Lead" ({cols})')
            sql = f'INSERT INTO "Lead" VALUES ({", ".join("?" * len(df.columns))})'
            step = 100_000
            for i in range(0, len(df), step):
                chunk = df.iloc[i:i + step]
                columns = [pa.array(chunk[c]).to_pylist() for c in df.columns]
                con.executemany(sql, zip(*columns))
            con.commit()
        finally:
            con.close()
        return path


# ---------------------------------------------------------------------------------------------
# The next night: what changes in the sources in one day
# ---------------------------------------------------------------------------------------------
SECOND = 1000
# How an existing CRM or marketing lead changes overnight; deals won or lost are drawn apart.
TITLE, PHONE, PROGRESS, OWNER, COMPANY, OUTCOME = range(6)
_CHANGE_KINDS = ("title", "phone", "progression", "owner", "company_fix", "outcome")
_CHANGE_SHARE = np.array([0.22, 0.15, 0.35, 0.18, 0.10])
_STAGE_RANK = {s: i for i, s in enumerate(("inquiry", "mql", "sql", "opportunity", "customer"))}
# A rep works the lead one step further: (next status, the least stage that status implies).
_PROGRESS = {"new": ("working", "mql"), "nurturing": ("working", "mql"), "working": ("qualified", "sql"),
             "qualified": ("qualified", "opportunity")}
# The lead columns a night changes, as each source names them.
_LEAD_COLUMNS = {
    SF: {"title": "Title", "phone": "Phone", "company": "Company", "owner": "OwnerId", "status": "Status",
         "stage": "Stage__c", "modified": "LastModifiedDate", "activity": "LastActivityDate"},
    HS: {"title": "jobtitle", "phone": "phone", "company": "company", "owner": "hubspot_owner_id",
         "status": "hs_lead_status", "stage": "lifecyclestage", "modified": "lastmodifieddate",
         "activity": "notes_last_updated"},
}
_TERRITORIES = ("NA-West", "NA-East", "EMEA", "APAC")
_COUNTRY_TERRITORIES = {"US": (0, 1), "GB": (2,), "DE": (2,), "FR": (2,), "AU": (3,)}
_SUFFIX_RE = re.compile(r",?\s+(?:" + "|".join(sorted({re.escape(s) for v in _SUFFIXES.values() for s in v if s}
                                                       | {re.escape(s) for s in _LONG_SUFFIX.values()},
                                                       key=len, reverse=True)) + r")$")
_STR_TYPES = {pa.large_string(): STR, pa.string(): STR}.get


def _ms_of(values) -> np.ndarray:
    """Epoch milliseconds of a UTC timestamp column (Series or Arrow), -1 where null (the inverse of _ts)."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    ms = arr.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    return np.array(pc.fill_null(ms, -1).to_numpy(), dtype=np.int64)


def _column_np(table: pa.Table, name: str) -> np.ndarray:
    """A column as a writable numpy array: text as objects (None for null), times as epoch ms (-1 for null)."""
    col = table.column(name)
    if pa.types.is_timestamp(col.type):
        return _ms_of(col)
    return np.array(col.to_numpy(zero_copy_only=False))


def _set_column(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    """`table` with column `name` replaced by `values` (as _column_np gives them), in the column's type."""
    field = table.schema.field(name)
    if pa.types.is_timestamp(field.type):
        arr = pa.array(values, type=pa.int64(), mask=values < 0).cast(field.type)
    else:
        arr = pa.array(values, type=field.type, from_pandas=True)
    return table.set_column(table.schema.get_field_index(name), field, arr)


def _take(values, rows: np.ndarray):
    return values.iloc[rows].reset_index(drop=True) if isinstance(values, pd.Series) else _s(values[rows])


def next_night(folder: str | Path, changed_fraction: float = 0.01, new_fraction: float = 0.003,
               seed: int | None = None, out: str | Path | None = None, touched_fraction: float = 0.03,
               outcome_fraction: float = 0.0002) -> dict:
    """Write the following night's sources into `folder` (or into a copy at `out`); return the manifest.

    Everything new lands in the next data interval (now, now + 1 day], so a run at logical date
    now + 1 day pulls exactly this night's delta: about `changed_fraction` of the CRM and marketing
    leads change (title, phone, status and stage one step on, a new owner, a company name cleaned up,
    a few deals won or lost), `new_fraction` new leads arrive in all three lead sources (a quarter
    of them people already known, so dedupe has work), `touched_fraction` of the leads get touches,
    outcomes.csv gains the new outcomes, owners stay as they are. The truth file gets the new rows
    (their person_id) and the changed rows' status, stage, owner, outcome and touch counts; the
    manifest moves `now` on a day and counts the night in `last_night`. Deterministic for the
    folder's contents and `seed` (default: the sample's own seed and night number). Vectorised.
    """
    src = Path(folder)
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    dest = src
    if out is not None and Path(out).resolve() != src.resolve():
        dest = Path(out)
        if dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"{dest} is not empty; next_night copies the sources into a new folder")
        shutil.copytree(src, dest, dirs_exist_ok=True)
    for name, value in (("changed_fraction", changed_fraction), ("new_fraction", new_fraction),
                        ("touched_fraction", touched_fraction), ("outcome_fraction", outcome_fraction)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1, not {value}")
    night = _NextNight(dest, manifest, seed, changed_fraction, new_fraction, touched_fraction, outcome_fraction)
    return night.run()


class _NextNight:
    def __init__(self, folder: Path, manifest: dict, seed, changed, new, touched, outcomes):
        self.dir = folder
        self.manifest = manifest
        self.night = int(manifest.get("night", 1)) + 1
        self.seed = int(manifest["seed"] if seed is None else seed)
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.night, 24_111_963]))
        self.now = int(pd.Timestamp(manifest["now"]).value // 1_000_000)
        self.end = self.now + DAY
        self.fractions = {"changed": changed, "new": new, "touched": touched, "outcomes": outcomes}
        self.pools = name_pools()

    def run(self) -> dict:
        self._load()
        self._change()
        self._new_leads()
        self._touches()
        self._write()
        return self._write_manifest()

    # ------------------------------------------------------------------ read
    def _load(self):
        # The truth stays an Arrow table: columns are taken out as numpy arrays when needed and the
        # changed ones put back (a pandas round trip of every column costs seconds at 1M rows).
        self.truth = pq.read_table(self.dir / "truth.parquet")
        self.N = self.truth.num_rows
        system = self._np("source_system")
        self.src = np.select([system == SYSTEMS[SF], system == SYSTEMS[HS]], [SF, HS], EV).astype(np.int8)
        self.col = {c: self._np(c) for c in (
            "status", "stage", "owner_id", "lead_source", "outcome", "true_company", "true_phone_e164",
            "country_code", "source_id")}
        self.valid = pc.is_null(self.truth.column("planted_invalid")).to_numpy()
        self.person = self._np("person_id")
        self.r = self._np("ripeness")
        owners = pd.read_csv(self.dir / "owners.csv", dtype=str, keep_default_na=False)
        active = owners["active"].str.lower().eq("true").to_numpy()
        self.active_ids = owners["owner_id"].to_numpy(dtype=object)[active]
        terr = owners["territory"].map({t_: i for i, t_ in enumerate(_TERRITORIES)}).to_numpy()
        self.territory_of = dict(zip(owners["owner_id"], terr))
        self.active_by_terr = [self.active_ids[terr[active] == i] for i in range(len(_TERRITORIES))]
        self.marketing = pq.read_table(self.dir / "marketing_leads.parquet")

    def _np(self, name: str) -> np.ndarray:
        return _column_np(self.truth, name)

    def _times(self, k: int, n: int = 1) -> np.ndarray:
        """k (or k x n, sorted per row) moments in the next interval, at least a second after now."""
        ms = self.now + SECOND + (self.rng.random((k, n)) * (DAY - SECOND)).astype(np.int64)
        ms.sort(axis=1)
        return ms[:, 0] if n == 1 else ms

    def _territory(self, owner_ids: np.ndarray, country: np.ndarray) -> np.ndarray:
        """The territory of the lead's owner, else one its country belongs to."""
        rng = self.rng
        terr = np.array([self.territory_of.get(o, -1) if o is not None else -1 for o in owner_ids], dtype=np.int64)
        u = rng.random(len(terr))
        for code, options in _COUNTRY_TERRITORIES.items():
            m = (terr < 0) & (country == code)
            terr[m] = np.array(options)[(u[m] * len(options)).astype(int)]
        terr[terr < 0] = 0
        return terr

    def _new_owner(self, owner_ids: np.ndarray, country: np.ndarray) -> np.ndarray:
        """An active owner in the lead's territory, other than its current one where there is a choice."""
        terr = self._territory(owner_ids, country)
        out = np.empty(len(terr), dtype=object)
        u = self.rng.random(len(terr))
        for i, act in enumerate(self.active_by_terr):
            m = np.flatnonzero(terr == i)
            if not len(m):
                continue
            act = act if len(act) else self.active_ids
            pick = (u[m] * len(act)).astype(int)
            same = act[pick] == owner_ids[m]
            pick[same] = (pick[same] + 1) % len(act)
            out[m] = act[pick]
        same = np.flatnonzero(out == owner_ids)  # the territory's only active rep: someone from elsewhere
        if len(same) and len(self.active_ids) > 1:
            at = pd.Index(self.active_ids).get_indexer(out[same])
            out[same] = self.active_ids[(at + 1) % len(self.active_ids)]
        return out

    # ------------------------------------------------------------------ changes to existing leads
    def _change(self):
        rng, N, src, col = self.rng, self.N, self.src, self.col
        status, stage, person, r = col["status"], col["stage"], self.person, self.r
        closed_people = np.isin(person, person[col["outcome"] != None])  # noqa: E711
        owner_ok = np.isin(col["owner_id"], self.active_ids)
        # People with a rep-created row keep their owners: a new owner could turn a row into (or out
        # of) a duplicate-for-credit, and the truth says which rows are.
        self.has_rep_row = np.isin(person, person[col["lead_source"] == "rep_created"])
        deal_ready = (self.valid & (src != EV) & owner_ok & np.isin(status, ["working", "qualified"])
                      & np.isin(stage, ["mql", "sql", "opportunity"]) & ~closed_people)
        k_out = int(round(self.fractions["outcomes"] * N))
        k_out = max(1, k_out) if self.fractions["outcomes"] > 0 and self.fractions["changed"] > 0 else 0
        won_rows = _choose(rng, np.flatnonzero(deal_ready), k_out, weights=r[deal_ready])
        won_rows = won_rows[np.unique(person[won_rows], return_index=True)[1]]
        is_out = np.zeros(N, bool)
        is_out[won_rows] = True
        picked = [won_rows]
        for s in (SF, HS):
            k = int(round(self.fractions["changed"] * (src == s).sum())) - int((src[won_rows] == s).sum())
            cand = np.flatnonzero((src == s) & self.valid & ~is_out)
            picked.append(_choose(rng, cand, k, weights=1 + 2 * r[cand]))
        rows = np.sort(np.concatenate(picked))
        self.changed = rows
        cur = self._current(rows)
        k = len(rows)
        kind = _cat(rng, _CHANGE_SHARE, k).astype(np.int8)
        kind[is_out[rows]] = OUTCOME
        # A lead a rep can move on: open, not yet at its last open stage, no deal closed.
        open_ = (np.isin(status[rows], C.OPEN_STATUSES) & np.isin(stage[rows], ["inquiry", "mql", "sql", "opportunity"])
                 & ~((status[rows] == "qualified") & (stage[rows] == "opportunity"))
                 & (col["outcome"][rows] == None))  # noqa: E711
        # A change that does not fit the lead (a closed lead moves no further, a clean name needs no
        # fix, some owners stay) becomes a new title or phone.
        plain = np.where(rng.random(k) < 0.6, TITLE, PHONE).astype(np.int8)
        keep_owner = self.has_rep_row[rows]
        misfit = (((kind == PROGRESS) & (~open_ | (~owner_ok[rows] & keep_owner)))
                  | ((kind == COMPANY) & (cur["company"] == col["true_company"][rows]))
                  | ((kind == OWNER) & keep_owner))
        kind[misfit] = plain[misfit]
        # When it happened: a rep's touch, the close, then the record's save.
        when = self._times(k, 3)
        touch_at, closed_at, modified = when[:, 0], when[:, 1], when[:, 2]
        new = {c: cur[c].copy() for c in ("title", "phone", "company", "owner", "status", "stage")}
        new_status, new_stage = status[rows].copy(), stage[rows].copy()
        # Title: a new job title.
        m = kind == TITLE
        idx = rng.integers(0, len(_TITLES), k)
        titles = np.array(_TITLES, dtype=object)
        clash = titles[idx] == cur["title"]
        idx[clash] = (idx[clash] + 1) % len(_TITLES)
        new["title"][m] = titles[idx[m]]
        # Phone: the same number as another rep types it.
        m = np.flatnonzero(kind == PHONE)
        if len(m):
            new["phone"][m] = _format_phones(rng, col["true_phone_e164"][rows[m]], col["country_code"][rows[m]],
                                             avoid=cur["phone"][m])
        # Company: the typo or variant cleaned up to the real name.
        m = kind == COMPANY
        new["company"][m] = col["true_company"][rows[m]]
        # Owner: reassigned (an orphan finds an owner); worked leads need an active owner.
        m = (kind == OWNER) | (((kind == PROGRESS) | (kind == OUTCOME)) & ~owner_ok[rows])
        m = np.flatnonzero(m)
        new["owner"][m] = self._new_owner(cur["owner"][m], col["country_code"][rows[m]])
        # Progression: status and stage one step on.
        m = np.flatnonzero(kind == PROGRESS)
        for i in m:
            nxt, least = _PROGRESS[new_status[i]]
            new_status[i] = nxt
            stage_now = new_stage[i]
            new_stage[i] = least if _STAGE_RANK.get(stage_now, 0) < _STAGE_RANK[least] else stage_now
        # Outcomes: won (ripe leads likelier) or lost.
        m = np.flatnonzero(kind == OUTCOME)
        won = rng.random(len(m)) < 0.3 + 0.5 * r[rows[m]]
        is_hs = src[rows[m]] == HS
        new_status[m] = np.where(won, np.where(is_hs, "qualified", "converted"),
                                 np.where(is_hs, "unqualified", "closed"))
        new_stage[m] = np.where(won, "customer", "opportunity")
        amount = np.round(rng.lognormal(np.log(24_000), 0.9, len(m)) / 50) * 50
        self.new_outcomes = {"rows": rows[m], "won": won, "closed_at": closed_at[m], "amount": amount}
        # Vendor values for the changed status and stage.
        worked = np.isin(kind, [PROGRESS, OUTCOME])
        for s, (smap, gmap) in ((SF, (_CRM_STATUS_OUT, _CRM_STAGE_OUT)), (HS, (_HS_STATUS_OUT, _HS_STAGE_OUT))):
            mm = np.flatnonzero(worked & (src[rows] == s))
            new["status"][mm] = [smap[v][0] for v in new_status[mm]]
            new["stage"][mm] = [gmap[v][0] for v in new_stage[mm]]
        new["modified"] = modified
        self.change_new = new
        self.change_kind = kind
        # A worked lead was touched by its (new) owner: a call, or the meeting that closed the deal.
        dnc = self._np("do_not_call")[rows]
        ttype = np.where(kind == OUTCOME, TT["meeting"], np.where(dnc, TT["rep_email"], TT["call"]))
        self.change_touches = {"row": rows[worked], "type": ttype[worked].astype(np.int8), "ts": touch_at[worked],
                               "actor": new["owner"][worked]}
        # The truth follows.
        col["status"][rows], col["stage"][rows], col["owner_id"][rows] = new_status, new_stage, new["owner"]
        outcome_rows = self.new_outcomes["rows"]
        col["outcome"][outcome_rows] = np.where(won, "won", "lost")

    def _current(self, rows: np.ndarray) -> dict:
        """The changed rows' current vendor values, read from the CRM database and the marketing file."""
        src, k = self.src, len(rows)
        out = {c: np.full(k, None, dtype=object) for c in ("title", "phone", "company", "owner", "status", "stage")}
        rownum = self._np("row_number")[rows]
        sf = np.flatnonzero(src[rows] == SF)
        cols = _LEAD_COLUMNS[SF]
        con = sqlite3.connect(self.dir / "crm.db")
        try:
            con.execute("CREATE TEMP TABLE pick (id INTEGER PRIMARY KEY)")
            con.executemany("INSERT INTO pick VALUES (?)", ((int(i),) for i in rownum[sf]))
            names = ", ".join(f'"{cols[c]}"' for c in out)
            got = con.execute(f'SELECT rowid, {names} FROM "Lead" WHERE rowid IN (SELECT id FROM pick)').fetchall()
        finally:
            con.close()
        by_rowid = {g[0]: g[1:] for g in got}
        if len(by_rowid) != len(sf):
            raise ValueError(f"{self.dir / 'crm.db'}: {len(sf) - len(by_rowid)} rows of truth.parquet are not in "
                             "the Lead table (was it edited by hand?)")
        values = np.array([by_rowid[int(i)] for i in rownum[sf]], dtype=object).reshape(len(sf), len(out))
        for j, c in enumerate(out):
            out[c][sf] = values[:, j]
        hs = np.flatnonzero(src[rows] == HS)
        cols = _LEAD_COLUMNS[HS]
        pos = pa.array(rownum[hs] - 1)
        for c in out:
            out[c][hs] = self.marketing.column(cols[c]).take(pos).to_numpy(zero_copy_only=False)
        return out

    # ------------------------------------------------------------------ new leads
    def _new_leads(self):
        rng, col, pools = self.rng, self.col, self.pools
        k = int(round(self.fractions["new"] * self.N))
        n_dup = int(round(0.25 * k))
        n_new = k - n_dup
        vi = np.flatnonzero(self.valid)
        rep_rows = vi[np.unique(self.person[vi], return_index=True)[1]]  # each known person's first valid row
        w = 1 + 2 * self.r[rep_rows]
        dup_of = rep_rows[rng.choice(len(rep_rows), size=n_dup, p=w / w.sum())] if n_dup else np.empty(0, np.int64)
        src = np.empty(k, dtype=np.int8)
        same = rng.random(n_dup) < 0.4
        src[:n_dup] = np.where(same, self.src[dup_of], _cat(rng, SOURCE_SHARE, n_dup))
        src[n_dup:] = _cat(rng, SOURCE_SHARE, n_new)
        # Who they are: known people as the truth knows them, new people at companies already in the data.
        at = vi[rng.integers(0, len(vi), n_new)]
        base = np.concatenate([dup_of, at])
        country = col["country_code"][base]
        cc = pd.Series(country).map({c: i for i, c in enumerate(COUNTRIES)}).to_numpy(dtype=np.int64)
        first = np.empty(k, dtype=object)
        last = np.empty(k, dtype=object)
        email = np.empty(k, dtype=object)
        e164 = np.empty(k, dtype=object)
        for c, into in (("true_first_name", first), ("true_last_name", last), ("true_email", email),
                        ("true_phone_e164", e164)):
            into[:n_dup] = self._np(c)[dup_of]
        nfc, nf = pools["n_common_first"], len(pools["first"])
        nl, nreal, nacc = len(pools["last"]), pools["n_real_last"], pools["n_accented_last"]
        zipf = 1.0 / np.arange(1, nfc + 1) ** 0.35
        fn = rng.choice(nfc, size=n_new, p=zipf / zipf.sum())
        acc = rng.random(n_new) < np.where(np.isin(cc[n_dup:], [2, 3]), 0.45, 0.08)
        fn[acc] = nfc + rng.integers(0, nf - nfc, acc.sum())
        u = rng.random(n_new)
        ln = nreal + nacc + rng.integers(0, nl - nreal - nacc, n_new)
        real = u < 0.2
        zr = 1.0 / np.arange(1, nreal + 1) ** 0.8
        ln[real] = rng.choice(nreal, size=real.sum(), p=zr / zr.sum())
        acc_l = (u >= 0.2) & (u < 0.22)
        ln[acc_l] = nreal + rng.integers(0, nacc, acc_l.sum())
        first[n_dup:] = np.array(pools["first"], dtype=object)[fn]
        last[n_dup:] = np.array(pools["last"], dtype=object)[ln]
        company_id = self._np("company_id")[base]
        sites = self._company_sites()
        site = sites.reindex(company_id)
        domain = site["domain"].to_numpy(dtype=object, na_value=None)
        email[n_dup:] = self._new_emails(first[n_dup:], last[n_dup:], domain[n_dup:])
        e164[n_dup:] = self._new_phones(cc[n_dup:])
        ripeness = np.concatenate([self.r[dup_of], rng.beta(1.2, 4.2, n_new)])
        person = np.concatenate([self.person[dup_of], self.person.max() + 1 + np.arange(n_new)])
        opt_col = self._np("email_opt_out")
        bounced_col = self._np("email_bounced")
        optout = np.concatenate([opt_col[dup_of], rng.random(n_new) < 0.04])
        bounced = np.concatenate([bounced_col[dup_of], rng.random(n_new) < 0.02])
        dup = np.arange(k) < n_dup
        # How the rows show them.
        var = {}
        shown_first = first.copy()
        nick_idx = pd.Series(first).map({f: i for i, f in enumerate(pools["first"])}).to_numpy(dtype=float,
                                                                                                  na_value=np.nan)
        nick = np.empty(k, dtype=object)  # one tuple of nicknames per row (filled one by one: a 1-d array)
        nick[:] = [pools["nicknames"][int(i)] if i == i else () for i in nick_idx]
        sel = np.flatnonzero(dup & (np.array([len(x) for x in nick]) > 0) & (rng.random(k) < 0.18))
        shown_first[sel] = [nick[i][int(v * len(nick[i]))] for i, v in zip(sel, rng.random(len(sel)))]
        var["nickname"] = np.isin(np.arange(k), sel)
        u = rng.random(k)
        upper = (dup & (u < 0.05)) | ((src == EV) & (u < 0.12))
        lower = dup & (u >= 0.05) & (u < 0.08)
        sf_, sl_ = _s(shown_first), _s(last)
        shown_first = sf_.mask(upper, _upper(sf_)).mask(lower, sf_.str.lower())
        shown_last = sl_.mask(upper, _upper(sl_)).mask(lower, sl_.str.lower())
        var["name_case"] = upper | lower
        shown_email = _s(email)
        gmail = shown_email.str.endswith("@gmail.com").to_numpy(dtype=bool, na_value=False)
        plus = dup & gmail & (rng.random(k) < 0.3)
        tags = _pick(_PLUS_TAGS, rng.integers(0, len(_PLUS_TAGS), k))
        parts = shown_email.str.split("@", n=1)
        shown_email = shown_email.mask(plus, parts.str[0] + "+" + tags + "@" + parts.str[1])
        ecase = dup & (rng.random(k) < 0.05)
        shown_email = shown_email.mask(ecase, shown_email.str.upper())
        var["email_plus_tag"], var["email_case"] = plus, ecase
        shown_phone = _s(_format_phones(rng, e164, country))
        u = rng.random((4, k))
        no_phone = (u[0] < np.select([src == SF, src == HS], [0.05, 0.15], 0.25)) | (dup & (u[1] < 0.10))
        no_email = ((dup & (u[2] < 0.08)) | ((src == EV) & (u[3] < 0.4))) & ~no_phone
        shown_phone = shown_phone.mask(no_phone)
        shown_email = shown_email.mask(no_email)
        var["phone_missing"], var["email_missing"] = dup & no_phone, dup & no_email
        true_company = col["true_company"][base]
        company = _s(true_company)
        cu = rng.random(k)
        cvar = np.where(cu < np.where(dup, 0.3, 0.05) + np.where(src == EV, 0.2, 0),
                        1 + (rng.random(k) * 3).astype(int), 0)
        stripped = company.str.replace(_SUFFIX_RE, "", regex=True)
        company = (company.mask(cvar == 1, _upper(stripped)).mask(cvar == 2, company.str.lower())
                   .mask(cvar == 3, stripped))
        var["company_variant"] = (company != _s(true_company)).to_numpy(dtype=bool, na_value=False)
        title = _pick(_TITLES, rng.integers(0, len(_TITLES), k)).mask(rng.random(k) < 0.05)
        wv = rng.integers(0, 4, k)
        dom = _s(site["website_domain"].to_numpy(dtype=object, na_value=None))
        website = ("https://www." + dom).mask(wv == 1, "www." + dom).mask(wv == 2, "http://" + dom).mask(wv == 3, dom)
        website = website.mask(rng.random(k) < 0.1)
        addr_missing = rng.random(k) < np.where(src == HS, 0.3, 0.05)
        address = {c: _s(site[c].to_numpy(dtype=object, na_value=None)).mask(addr_missing)
                   for c in ("address", "city", "state", "zip")}
        country_text = np.empty(k, dtype=object)
        uc = rng.random(k)
        for s in (SF, HS, EV):
            for code, opts in _COUNTRY_TEXT[s].items():
                m = (src == s) & (country == code)
                country_text[m] = np.array(opts, dtype=object)[(uc[m] * len(opts)).astype(int)]
        # Status, stage, lead source and owner of a lead that just arrived.
        fresh_working = rng.random(k) < 0.15
        status = np.where(fresh_working, "working", "new").astype(object)
        ur = rng.random(k)
        stage = np.where(fresh_working, np.where(ur < 0.2 + 0.6 * ripeness, "sql", "mql"),
                         np.where((ripeness > 0.25) & (ur < 0.3 + 0.6 * ripeness), "mql", "inquiry")).astype(object)
        cdf_cold, cdf_hot = np.cumsum(_COLD_SOURCE), np.cumsum(_HOT_SOURCE)
        uu = rng.random(k)
        ls = np.where(rng.random(k) < ripeness, np.searchsorted(cdf_hot, uu * cdf_hot[-1]),
                      np.searchsorted(cdf_cold, uu * cdf_cold[-1]))
        ls = np.minimum(ls, 6)
        ls[dup & (ls == LS["rep_created"])] = LS["other"]  # a returning person is no credit grab
        ls[(src == HS) & (ls == LS["rep_created"])] = LS["purchased_list"]
        ls[src == EV] = LS["event"]
        status[src == EV], stage[src == EV] = "new", "inquiry"
        lead_source = np.array(C.LEAD_SOURCES, dtype=object)[ls]
        purchased = (lead_source == "purchased_list") & (rng.random(k) < 0.5) & shown_phone.notna().to_numpy()
        shown_email = shown_email.mask(purchased)
        var["no_email_source"] = purchased | ((src == EV) & no_email)
        owner = np.full(k, None, dtype=object)
        has_owner = src != EV
        base_owner = col["owner_id"][base]
        owner[has_owner] = self._new_owner(base_owner[has_owner], country[has_owner])
        created = self._times(k)
        modified = np.minimum(created + (rng.random(k) * 15 * MINUTE).astype(np.int64), self.end)
        creation_touch = np.isin(lead_source, ["form_fill", "target_page", "email", "event"])
        dnc = (src == SF) & (rng.random(k) < 0.03)
        optout_flag = optout & (src != EV) & ((src != SF) | (rng.random(k) < 0.9))
        # Ids and positions after the rows already in each source.
        ids = np.empty(k, dtype=object)
        row_number = np.zeros(k, dtype=np.int64)
        for s in (SF, HS, EV):
            m = np.flatnonzero(src == s)
            m = m[np.argsort(created[m], kind="stable")]
            row_number[m] = int((self.src == s).sum()) + 1 + np.arange(len(m))
            ids[m] = self._new_ids(s, len(m))
        self.new = {
            "src": src, "ids": ids, "row_number": row_number, "person": person, "dup": dup, "ripeness": ripeness,
            "first": shown_first, "last": shown_last, "email": shown_email, "phone": shown_phone,
            "company": company, "title": title, "website": website, **address, "country": _s(country_text),
            "owner": owner, "status": status, "stage": stage, "lead_source": lead_source, "created": created,
            "modified": modified, "activity": np.where(creation_touch, created, -1), "optout_flag": optout_flag,
            "dnc": dnc, "creation_touch": creation_touch,
        }
        # Truth rows for them.
        existing = np.bincount(self.person, minlength=int(person.max(initial=0)) + 1)
        within = pd.Series(person).groupby(person).cumcount().to_numpy()
        names = np.array(SOURCE_NAMES, dtype=object)[src]
        vtxt = _s(np.full(k, "", dtype=object))
        for key, flag in var.items():
            vtxt = vtxt + _s(np.where(flag, key + ";", ""))
        vtxt = vtxt.str.rstrip(";").replace("", pd.NA)
        converted = np.zeros(k, bool)
        converted[:n_dup] = self._np("converted")[dup_of]
        open_ = np.isin(status, C.OPEN_STATUSES)
        nat = np.full(k, -1, dtype=np.int64)
        self.new_truth = pd.DataFrame({
            "source_system": _pick(SYSTEMS, src), "source_name": _s(names), "source_id": _s(ids),
            "row_number": row_number, "row_key": _s(names) + ":" + _s(row_number.astype(str)),
            "person_id": person, "company_id": company_id, "is_duplicate": dup,
            "dup_rank": np.where(dup, existing[person] + within, within), "duplicate_for_credit": np.zeros(k, bool),
            "variations": vtxt, "planted_invalid": _s(np.full(k, None, dtype=object)),
            "duplicate_source_id_of": _s(np.full(k, None, dtype=object)),
            "planted_orphaned": open_ & ~has_owner, "orphan_reason": _s(np.full(k, None, dtype=object)),
            "planted_stale": np.zeros(k, bool), "planted_false_qualified": np.zeros(k, bool),
            "status_outdated": np.zeros(k, bool), "ripeness": ripeness, "converted": converted,
            "outcome": _s(np.full(k, None, dtype=object)), "closed_at": _ts(nat), "amount": np.full(k, np.nan),
            "fast_response": np.zeros(k, bool), "n_touches": np.zeros(k, np.int64),
            "n_rep_touches": np.zeros(k, np.int64), "first_rep_touch_at": _ts(nat), "last_touch_at": _ts(nat),
            "created_at": _ts(created), "status": _s(status), "stage": _s(stage), "lead_source": _s(lead_source),
            "owner_id": _s(owner), "email_opt_out": optout, "email_opt_out_flag": optout_flag,
            "email_bounced": bounced, "do_not_call": dnc, "country_code": _s(country),
            "true_first_name": _s(first), "true_last_name": _s(last), "true_email": _s(email).str.lower(),
            "true_phone_e164": _s(e164), "true_company": _s(true_company),
        })

    def _company_sites(self) -> pd.DataFrame:
        """Per company: the web domain and address its marketing rows show (the first one given)."""
        hs = np.flatnonzero(self.src == HS)
        order = hs[np.argsort(self._np("row_number")[hs], kind="stable")]
        frame = self.marketing.select(["website", "address", "city", "state", "zip"]).to_pandas(
            types_mapper=_STR_TYPES)
        frame["company_id"] = self._np("company_id")[order]
        dom = frame["website"].str.replace(r"^(https?://)?(www\.)?", "", regex=True).str.lower()
        frame["website_domain"] = dom
        frame["domain"] = dom
        return frame.drop(columns="website").groupby("company_id").first()

    def _new_emails(self, first: np.ndarray, last: np.ndarray, domain: np.ndarray) -> np.ndarray:
        """Addresses for new people, none equal (after gmail canonicalisation) to a known person's."""
        rng, n = self.rng, len(first)
        f = _s([_ascii_key(x) or "x" for x in first])
        l_ = _s([_ascii_key(x) or "x" for x in last])
        free = (rng.random(n) < 0.35) | pd.isna(domain)
        fdom = _pick(_FREE_DOMAINS, _cat(rng, _FREE_SHARE, n))
        num = _s(rng.integers(1, 100, n).astype(str)).str.zfill(2)
        pat = rng.integers(0, 3, n)
        local = (f + "." + l_).mask(pat == 1, f.str.slice(0, 1) + l_).mask(pat == 2, f + l_ + num)
        dom = _s(domain).mask(free, fdom)
        known = pc.unique(pc.replace_substring(pc.utf8_lower(self.truth.column("true_email")), ".", "")
                          .combine_chunks()).drop_null()
        for _ in range(10):
            key = (local + "@" + dom).str.lower().str.replace(".", "", regex=False)
            clash = (pc.is_in(pa.array(key).cast(known.type), value_set=known).to_numpy(zero_copy_only=False)
                     | key.duplicated().to_numpy())
            if not clash.any():
                break
            local = local.mask(clash, local + _s(rng.integers(2, 10_000, n).astype(str)))
        return (local + "@" + dom).str.lower().to_numpy(dtype=object)

    def _new_phones(self, cc: np.ndarray) -> np.ndarray:
        """E.164 numbers for new people, none a known person's."""
        rng, n = self.rng, len(cc)
        dial = np.array([_DIAL[c] for c in COUNTRIES], dtype=object)[cc]
        known = pc.unique(self.truth.column("true_phone_e164").combine_chunks()).drop_null()
        out = np.empty(n, dtype=object)
        todo = np.arange(n)
        for _ in range(10):
            area = np.array(_US_AREA_CODES, dtype=object)[rng.integers(0, len(_US_AREA_CODES), (cc[todo] == 0).sum())]
            nsn = _national_numbers(rng, cc[todo], area)
            out[todo] = ("+" + _s(dial[todo]) + _s(nsn.astype(str))).to_numpy(dtype=object)
            s = _s(out)
            clash = (pc.is_in(pa.array(s).cast(known.type), value_set=known).to_numpy(zero_copy_only=False)
                     | s.duplicated().to_numpy())
            todo = np.flatnonzero(clash)
            if not len(todo):
                break
        return out

    def _new_ids(self, s: int, n: int) -> np.ndarray:
        rng = self.rng
        if not n:
            return np.empty(0, dtype=object)
        if s == SF:
            con = sqlite3.connect(self.dir / "crm.db")
            try:
                top = con.execute('SELECT MAX(substr("Id", 1, 15)) FROM "Lead"').fetchone()[0]
            finally:
                con.close()
            alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
            num = 0
            for ch in top[6:15]:
                num = num * 62 + alphabet.index(ch)
            return _sf_ids("00Q", num + np.cumsum(rng.integers(1, 30, n)))
        if s == HS:
            ids = pc.cast(self.marketing.column("hs_object_id"), pa.int64())
            top = pc.max(ids).as_py() or 1_000_000
            return (top + np.cumsum(rng.integers(1, 200, n))).astype(str).astype(object)
        day = np.datetime64(self.end - 1, "ms").astype("datetime64[D]").astype(str).replace("-", "")[2:]
        return (_s(np.full(n, f"RMEET{day}-", dtype=object)) + _s((1 + np.arange(n)).astype(str)).str.zfill(5)
                ).to_numpy(dtype=object)

    # ------------------------------------------------------------------ touches
    def _touches(self):
        """New touches: the worked leads' rep touches, new leads' first touch, and a few percent of all
        leads touched again (a cold/hot mixture by ripeness, like the first night's)."""
        rng, N = self.rng, self.N
        nw = self.new
        k_new = len(nw["src"])
        # Truth arrays over old + new rows.
        r = np.concatenate([self.r, nw["ripeness"]])
        owner = np.concatenate([self.col["owner_id"], nw["owner"]])
        status = np.concatenate([self.col["status"], nw["status"]])
        src = np.concatenate([self.src, nw["src"]])
        dnc = np.concatenate([self._np("do_not_call"), nw["dnc"]])
        opt = np.concatenate([self._np("email_opt_out"), self.new_truth["email_opt_out"].to_numpy()])
        bounced = np.concatenate([self._np("email_bounced"), self.new_truth["email_bounced"].to_numpy()])
        valid = np.concatenate([self.valid, np.ones(k_new, bool)])
        k = int(round(self.fractions["touched"] * N))
        cand = np.flatnonzero(valid[:N])
        picked = _choose(rng, cand, k, weights=0.3 + r[cand])
        n_each = 1 + np.minimum(rng.poisson(2 * r[picked]), 3)
        row = np.repeat(picked, n_each)
        cold = np.zeros(len(C.TOUCH_TYPES))
        hot = np.zeros(len(C.TOUCH_TYPES))
        for name, p in _COLD_TOUCH.items():
            cold[TT[name]] = p
        for name, p in _HOT_TOUCH.items():
            hot[TT[name]] = p
        cdf_c, cdf_h = np.cumsum(cold) / cold.sum(), np.cumsum(hot) / hot.sum()
        u = rng.random(len(row))
        typ = np.where(rng.random(len(row)) < r[row], np.searchsorted(cdf_h, u, side="right"),
                       np.searchsorted(cdf_c, u, side="right"))
        typ = np.minimum(typ, len(C.TOUCH_TYPES) - 1).astype(np.int8)
        to_marketing = np.arange(len(C.TOUCH_TYPES), dtype=np.int8)
        to_marketing[TT["call"]], to_marketing[TT["rep_email"]] = TT["page_view"], TT["email_open"]
        to_marketing[TT["meeting"]] = TT["email_click"]
        worked = (src[row] != EV) & np.isin(owner[row], self.active_ids) & (status[row] != "new")
        typ = np.where(worked, typ, to_marketing[typ]).astype(np.int8)
        typ[(typ == TT["call"]) & dnc[row]] = TT["rep_email"]
        ts = self._times(len(row))
        # The new leads' first touch: what brought them in.
        nr = np.flatnonzero(nw["creation_touch"])
        ls = nw["lead_source"][nr]
        first_typ = np.select([ls == "form_fill", ls == "target_page", ls == "email"],
                              [TT["form_fill"], np.where(rng.random(len(nr)) < 0.4, TT["pricing_page_view"],
                                                         TT["page_view"]), TT["email_click"]],
                              TT["event_attended"]).astype(np.int8)
        ct = self.change_touches
        row = np.concatenate([row, ct["row"], N + nr])
        typ = np.concatenate([typ, ct["type"], first_typ])
        ts = np.concatenate([ts, ct["ts"], nw["created"][nr]])
        email_t = np.isin(typ, [TT["email_open"], TT["email_click"]])
        typ[email_t & bounced[row]] = TT["email_bounce"]
        typ[np.isin(typ, [TT["email_open"], TT["email_click"], TT["email_bounce"]]) & opt[row]] = TT["page_view"]
        rep = np.isin(typ, [TT["call"], TT["rep_email"], TT["meeting"]])
        actor = np.where(rep, owner[row], "marketing").astype(object)
        camp = self._campaigns(typ, ts, event_first=np.r_[np.zeros(len(row) - len(nr), bool),
                                                           nw["src"][nr] == EV])
        order = np.lexsort((row, ts))
        self.touch = {"row": row[order], "type": typ[order], "ts": ts[order], "actor": actor[order],
                      "camp": camp[order], "src": src[row[order]]}
        # Truth: touch counts, last touch, first rep touch; a touched lead is no longer idle.
        total = N + k_new
        n = np.bincount(row, minlength=total)
        n_rep = np.bincount(row[rep], minlength=total)
        last = np.full(total, -1, dtype=np.int64)
        np.maximum.at(last, row, ts)
        first_rep = np.full(total, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_rep, row[rep], ts[rep])
        self.touch_stats = {"n": n, "n_rep": n_rep, "last": last,
                            "first_rep": np.where(first_rep == np.iinfo(np.int64).max, -1, first_rep)}

    def _campaigns(self, typ: np.ndarray, ts: np.ndarray, event_first: np.ndarray) -> np.ndarray:
        rng, n = self.rng, len(typ)
        month = np.datetime_as_string(ts.astype("datetime64[ms]").astype("datetime64[M]"))
        out = np.full(n, None, dtype=object)
        email_t = np.isin(typ, [TT["email_open"], TT["email_click"], TT["email_bounce"], TT["unsubscribe"]])
        series = np.array(_EMAIL_SERIES, dtype=object)[rng.integers(0, len(_EMAIL_SERIES), n)]
        out[email_t] = series[email_t] + " " + month[email_t].astype(object)
        m = typ == TT["form_fill"]
        out[m] = np.array(_FORMS, dtype=object)[rng.integers(0, len(_FORMS), m.sum())]
        m = np.flatnonzero(np.isin(typ, [TT["page_view"], TT["pricing_page_view"]]))
        utm = np.array(_UTMS, dtype=object)[rng.integers(0, len(_UTMS), len(m))]
        out[m] = np.where(rng.random(len(m)) < 0.4, None, utm)
        out[typ == TT["demo_request"]] = "Website - Book a Demo"
        m = typ == TT["event_attended"]
        out[m] = "Webinar " + month[m].astype(object)
        day = str(np.datetime64(self.end - 1, "ms").astype("datetime64[D]"))
        out[m & event_first] = f"RevOps Meetup {day}"
        return out

    # ------------------------------------------------------------------ write
    def _write(self):
        self._write_crm()
        self._write_marketing()
        self._write_events()
        self._write_touches()
        self._write_outcomes()
        self._write_truth()

    def _new_frame(self, rows: np.ndarray, columns: dict) -> pd.DataFrame:
        """The new rows `rows` as a frame: output column -> key of self.new."""
        return pd.DataFrame({out: _take(self.new[key], rows) for out, key in columns.items()})

    def _touched_of(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers of the source's existing rows touched tonight, and their last touch."""
        last = self.touch_stats["last"][:self.N]
        m = np.flatnonzero((last >= 0) & (self.src == s))
        return self._np("row_number")[m], last[m]

    def _changed_of(self, s: int):
        m = np.flatnonzero(self.src[self.changed] == s)
        return m, self._np("row_number")[self.changed[m]]

    def _write_crm(self):
        path = self.dir / "crm.db"
        m, rowid = self._changed_of(SF)
        new, cols = self.change_new, _LEAD_COLUMNS[SF]
        con = sqlite3.connect(path)
        try:
            columns = [r[1] for r in con.execute('PRAGMA table_info("Lead")')]
            sets = ("title", "phone", "company", "owner", "status", "stage")
            sql = (f'UPDATE "Lead" SET {", ".join(f"{chr(34)}{cols[c]}{chr(34)} = ?" for c in sets)}, '
                   f'"{cols["modified"]}" = ? WHERE rowid = ?')
            modified = _sf_time(new["modified"][m]).to_numpy(dtype=object, na_value=None)
            con.executemany(sql, zip(*[new[c][m] for c in sets], modified, (int(i) for i in rowid)))
            # The CRM keeps its last activity date up to date without counting it as a change of the lead.
            touched, last = self._touched_of(SF)
            con.executemany(f'UPDATE "Lead" SET "{cols["activity"]}" = ? WHERE rowid = ?',
                            zip(_sf_time(last).to_numpy(dtype=object, na_value=None), (int(i) for i in touched)))
            nw = self.new
            rows = np.flatnonzero(nw["src"] == SF)
            rows = rows[np.argsort(nw["row_number"][rows])]
            frame = self._new_frame(rows, {
                "Id": "ids", "FirstName": "first", "LastName": "last", "Email": "email", "Phone": "phone",
                "Company": "company", "Title": "title", "Website": "website", "Street": "address", "City": "city",
                "State": "state", "PostalCode": "zip", "Country": "country", "OwnerId": "owner"})
            frame["Status"] = _s([_CRM_STATUS_OUT[v][0] for v in nw["status"][rows]])
            frame["Stage__c"] = _s([_CRM_STAGE_OUT[v][0] for v in nw["stage"][rows]])
            frame["LeadSource"] = _s([_CRM_SOURCE_OUT[v][0] for v in nw["lead_source"][rows]])
            frame["CreatedDate"] = _sf_time(nw["created"][rows])
            frame["LastModifiedDate"] = _sf_time(nw["modified"][rows])
            frame["LastActivityDate"] = _sf_time(nw["activity"][rows])
            frame["HasOptedOutOfEmail"] = nw["optout_flag"][rows].astype(np.int64)
            frame["DoNotCall"] = nw["dnc"][rows].astype(np.int64)
            frame = frame[columns]
            if len(frame):
                cells = [pa.array(frame[c]).to_pylist() for c in columns]
                con.executemany(f'INSERT INTO "Lead" VALUES ({", ".join("?" * len(columns))})', zip(*cells))
            con.commit()
        finally:
            con.close()

    def _write_marketing(self):
        table, cols, new = self.marketing, _LEAD_COLUMNS[HS], self.change_new
        metadata = table.schema.metadata
        m, rownum = self._changed_of(HS)
        pos = rownum - 1
        for c in ("title", "phone", "company", "owner", "status", "stage", "modified"):
            values = _column_np(table, cols[c])
            values[pos] = new[c][m]
            table = _set_column(table, cols[c], values)
        touched, last = self._touched_of(HS)
        activity = _column_np(table, cols["activity"])
        activity[touched - 1] = last
        table = _set_column(table, cols["activity"], activity)
        nw = self.new
        rows = np.flatnonzero(nw["src"] == HS)
        rows = rows[np.argsort(nw["row_number"][rows])]
        add = self._new_frame(rows, {
            "hs_object_id": "ids", "firstname": "first", "lastname": "last", "email": "email", "phone": "phone",
            "company": "company", "jobtitle": "title", "website": "website", "address": "address", "city": "city",
            "state": "state", "zip": "zip", "country": "country", "hubspot_owner_id": "owner"})
        add["hs_lead_status"] = _s([_HS_STATUS_OUT[v][0] for v in nw["status"][rows]])
        add["lifecyclestage"] = _s([_HS_STAGE_OUT[v][0] for v in nw["stage"][rows]])
        add["hs_analytics_source"] = _s([_HS_SOURCE_OUT[v][0] for v in nw["lead_source"][rows]])
        add["createdate"] = _ts(nw["created"][rows])
        add["lastmodifieddate"] = _ts(nw["modified"][rows])
        add["notes_last_updated"] = _ts(nw["activity"][rows])
        add["hs_email_optout"] = nw["optout_flag"][rows]
        table = table.replace_schema_metadata(None)
        added = pa.Table.from_pandas(add, schema=table.schema, preserve_index=False).replace_schema_metadata(None)
        out = pa.concat_tables([table, added]).replace_schema_metadata(metadata)
        pq.write_table(out, self.dir / "marketing_leads.parquet")
        self.marketing = None

    def _write_events(self):
        nw = self.new
        rows = np.flatnonzero(nw["src"] == EV)
        rows = rows[np.argsort(nw["row_number"][rows])]
        if not len(rows):
            return
        scanned = _s(np.datetime_as_string(nw["created"][rows].astype("datetime64[ms]").astype("datetime64[s]"),
                                           unit="s")).str.replace("T", " ", regex=False)
        frame = self._new_frame(rows, {
            "Badge ID": "ids", "First Name": "first", "Last Name": "last", "E-mail": "email", "Telephone": "phone",
            "Organisation": "company", "Job Title": "title", "Country": "country"})
        frame["Scanned At"] = scanned
        with open(self.dir / "event_list.csv", "a", encoding="latin-1", errors="strict", newline="") as fh:
            frame.to_csv(fh, index=False, header=False, lineterminator="\n")

    def _write_touches(self):
        path = self.dir / "touches.parquet"
        tt, N, nw = self.touch, self.N, self.new
        source_id = np.concatenate([self.col["source_id"], nw["ids"]])
        old = pq.ParquetFile(path)
        schema = old.schema_arrow
        table = pa.table({
            "system": pa.array(np.array(SYSTEMS, dtype=object)[tt["src"]], type=pa.string()),
            "lead_id": pa.array(source_id[tt["row"]], type=pa.string()),
            "event": pa.array(np.array(C.TOUCH_TYPES, dtype=object)[tt["type"]], type=pa.string()),
            "medium": pa.array(np.array([TOUCH_MEDIUM[t_] for t_ in C.TOUCH_TYPES], dtype=object)[tt["type"]],
                               type=pa.string()),
            "campaign": pa.array(tt["camp"], type=pa.string()),
            "ts": pa.array(tt["ts"].astype("datetime64[ms]"), type=pa.timestamp("ms", tz="UTC")),
            "actor": pa.array(tt["actor"], type=pa.string()),
        }, schema=schema)
        tmp = path.with_name(path.name + ".tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in old.iter_batches(batch_size=1_000_000):
                writer.write_table(pa.Table.from_batches([batch], schema=schema))
            writer.write_table(table)
        old.close()
        os.replace(tmp, path)

    def _write_outcomes(self):
        o = self.new_outcomes
        if not len(o["rows"]):
            return
        order = np.lexsort((o["rows"], o["closed_at"]))
        rows = o["rows"][order]
        frame = pd.DataFrame({
            "source_system": np.array(SYSTEMS, dtype=object)[self.src[rows]], "source_id": self.col["source_id"][rows],
            "outcome": np.where(o["won"][order], "won", "lost"), "closed_at": _iso_z(o["closed_at"][order]),
            "amount": o["amount"][order],
        })
        with open(self.dir / "outcomes.csv", "a", encoding="utf-8", newline="") as fh:
            frame.to_csv(fh, index=False, header=False, lineterminator="\n", float_format="%.2f")

    def _write_truth(self):
        """The truth with the night in it: the changed rows' status, stage, owner and outcome, the new
        rows, touch counts, and staleness at the new now; rows in source order as before."""
        col, rows, o = self.col, self.changed, self.new_outcomes
        tab = self.truth
        metadata = tab.schema.metadata
        put = {c: col[c] for c in ("status", "stage", "owner_id", "outcome")}
        put["closed_at"] = self._np("closed_at")
        put["closed_at"][o["rows"]] = o["closed_at"]
        put["amount"] = self._np("amount").copy()
        put["amount"][o["rows"]] = o["amount"]
        put["converted"] = self._np("converted") | np.isin(self.person, self.person[o["rows"][o["won"]]])
        open_ = np.isin(col["status"][rows], C.OPEN_STATUSES)
        owned = np.isin(col["owner_id"][rows], self.active_ids)
        put["planted_orphaned"] = self._np("planted_orphaned").copy()
        put["planted_orphaned"][rows] = open_ & ~owned
        put["orphan_reason"] = self._np("orphan_reason")
        put["orphan_reason"][rows[owned]] = None
        put["status_outdated"] = self._np("status_outdated").copy()
        put["status_outdated"][rows] = (col["outcome"][rows] != None) & open_  # noqa: E711
        for name, values in put.items():
            tab = _set_column(tab, name, values)
        new = pa.Table.from_pandas(self.new_truth, schema=tab.schema.remove_metadata(), preserve_index=False)
        both = pa.concat_tables([tab.replace_schema_metadata(None), new.replace_schema_metadata(None)])
        self.truth = tab = None
        st = self.touch_stats
        for c, key in (("n_touches", "n"), ("n_rep_touches", "n_rep")):
            both = _set_column(both, c, _column_np(both, c) + st[key])
        last = np.maximum(_column_np(both, "last_touch_at"), st["last"])
        first_rep = _column_np(both, "first_rep_touch_at")
        both = _set_column(both, "last_touch_at", last)
        both = _set_column(both, "first_rep_touch_at", np.where(first_rep >= 0, first_rep, st["first_rep"]))
        # Stale as the unclosed flag defines it, at the new now: open and no activity for 45 days.
        idle_since = np.where(last >= 0, last, _column_np(both, "created_at"))
        stale = np.isin(_column_np(both, "status"), C.OPEN_STATUSES) & (idle_since < self.end - 45 * DAY)
        both = _set_column(both, "planted_stale", stale)
        src = np.concatenate([self.src, self.new["src"]])
        both = both.take(pa.array(np.lexsort((_column_np(both, "row_number"), src))))
        person = _column_np(both, "person_id")
        converted = _column_np(both, "converted")
        self.truth_counts = {
            "people": len(np.unique(person)), "duplicates": int(_column_np(both, "is_duplicate").sum()),
            "orphaned": int(_column_np(both, "planted_orphaned").sum()), "stale": int(stale.sum()),
            "converted_people": len(np.unique(person[converted])),
            "crm": int((src == SF).sum()), "marketing": int((src == HS).sum()), "events": int((src == EV).sum()),
        }
        pq.write_table(both.replace_schema_metadata(metadata), self.dir / "truth.parquet")

    def _write_manifest(self) -> dict:
        m = self.manifest
        nw, kind, o = self.new, self.change_kind, self.new_outcomes
        counts = dict(m["counts"])
        k_new = len(nw["src"])
        counts.update(self.truth_counts)
        counts["leads"] = int(counts["leads"]) + k_new
        counts["touches"] = int(counts["touches"]) + len(self.touch["ts"])
        counts["outcomes"] = int(counts["outcomes"]) + len(o["rows"])
        counts["won"] = int(counts["won"]) + int(o["won"].sum())
        counts["lost"] = int(counts["lost"]) + int((~o["won"]).sum())
        changed_src = self.src[self.changed]
        new_src = nw["src"]
        m.update({
            "out_dir": str(self.dir.resolve()),
            "files": {k: str((self.dir / Path(v).name).resolve()) for k, v in m["files"].items()},
            "counts": counts, "night": self.night,
            "now": pd.Timestamp(self.end, unit="ms", tz="UTC").isoformat(),
            "last_night": {
                "seed": self.seed, "fractions": self.fractions,
                "interval": [pd.Timestamp(self.now, unit="ms", tz="UTC").isoformat(),
                             pd.Timestamp(self.end, unit="ms", tz="UTC").isoformat()],
                "changed": {SOURCE_NAMES[s]: int((changed_src == s).sum()) for s in (SF, HS)},
                "changed_by_kind": {name: int((kind == i).sum()) for i, name in enumerate(_CHANGE_KINDS)},
                "new": {SOURCE_NAMES[s]: int((new_src == s).sum()) for s in (SF, HS, EV)},
                "new_duplicates": int(nw["dup"].sum()),
                "new_touches": len(self.touch["ts"]), "new_outcomes": len(o["rows"]),
            },
        })
        (self.dir / "manifest.json").write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
        return m


def _typo(s: str, a: float, b: float) -> str:
    if s is None or len(s) < 4:
        return s
    i = 1 + int(a * (len(s) - 2))
    if b < 0.5:
        return s[:i] + s[i + 1:]
    return s[:i - 1] + s[i] + s[i - 1] + s[i + 1:]


# ---------------------------------------------------------------------------------------------
# sources.yaml
# ---------------------------------------------------------------------------------------------
def sources_document() -> dict:
    """The sources file for a generated folder, as a dict (see slowburn.sources.config)."""
    return {"sources": [
        {"name": "crm", "kind": "sql", "entity": "leads", "url": "sqlite:///{here}/crm.db", "table": "Lead",
         "watermark": "LastModifiedDate", "default_region": "US", "constants": {"source_system": "salesforce"},
         "columns": {"source_id": "Id", "first_name": "FirstName", "last_name": "LastName", "email": "Email",
                     "phone": "Phone", "company": "Company", "title": "Title", "website": "Website",
                     "street": "Street", "city": "City", "state": "State", "postcode": "PostalCode",
                     "country": "Country", "owner_id": "OwnerId", "status": "Status", "stage": "Stage__c",
                     "lead_source": "LeadSource", "created_at": "CreatedDate", "updated_at": "LastModifiedDate",
                     "last_activity_at": "LastActivityDate", "email_opt_out": "HasOptedOutOfEmail",
                     "do_not_call": "DoNotCall"},
         "values": {k: dict(v) for k, v in VALUE_MAPS["crm"].items()}},
        {"name": "marketing", "kind": "file", "entity": "leads", "path": "marketing_leads.parquet",
         "watermark": "lastmodifieddate", "default_region": "US", "constants": {"source_system": "hubspot"},
         "columns": {"source_id": "hs_object_id", "first_name": "firstname", "last_name": "lastname",
                     "email": "email", "phone": "phone", "company": "company", "title": "jobtitle",
                     "website": "website", "street": "address", "city": "city", "state": "state", "postcode": "zip",
                     "country": "country", "owner_id": "hubspot_owner_id", "status": "hs_lead_status",
                     "stage": "lifecyclestage", "lead_source": "hs_analytics_source", "created_at": "createdate",
                     "updated_at": "lastmodifieddate", "last_activity_at": "notes_last_updated",
                     "email_opt_out": "hs_email_optout"},
         "values": {k: dict(v) for k, v in VALUE_MAPS["marketing"].items()}},
        {"name": "events", "kind": "file", "entity": "leads", "path": "event_list.csv", "encoding": "latin-1",
         "watermark": "Scanned At", "default_region": "US",
         "constants": {"source_system": "event_list", "lead_source": "event", "status": "new", "stage": "inquiry"},
         "columns": {"source_id": "Badge ID", "first_name": "First Name", "last_name": "Last Name",
                     "email": "E-mail", "phone": "Telephone", "company": "Organisation", "title": "Job Title",
                     "country": "Country", "created_at": "Scanned At"}},
        {"name": "engagement", "kind": "file", "entity": "touches", "path": "touches.parquet", "watermark": "ts",
         "columns": {"source_system": "system", "lead_source_id": "lead_id", "touch_type": "event",
                     "channel": "medium", "campaign": "campaign", "occurred_at": "ts", "actor": "actor"},
         "values": {k: dict(v) for k, v in VALUE_MAPS["engagement"].items()}},
        {"name": "owners", "kind": "file", "entity": "owners", "path": "owners.csv",
         "columns": {c: c for c in ("owner_id", "name", "email", "active", "deactivated_at", "team", "territory",
                                    "daily_capacity")}},
        {"name": "outcomes", "kind": "file", "entity": "outcomes", "path": "outcomes.csv",
         "columns": {c: c for c in ("source_system", "source_id", "outcome", "closed_at", "amount")}},
    ]}


def sources_yaml() -> str:
    header = ("# Sources for data made by `slowburn sample` (slowburn.sample.generate).\n"
              "# {here} and relative paths resolve against this file's folder.\n")
    return header + yaml.safe_dump(sources_document(), sort_keys=False, allow_unicode=True, width=120)
