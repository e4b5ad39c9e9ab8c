"""France RappelConso (V2): the Opendatasoft records API of data.economie.gouv.fr, newest first since a date."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

import scrapy

from crawlers.base import (FAILURE_EMPTY, FAILURE_ERROR_BODY, FAILURE_LAYOUT, RadarSpider, as_int, clean_text,
                           find_gtin, parse_date, record_bytes, split_labels, unique, week_start)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

LOOKBACK_DAYS = 63  # fiches published (a new version is published again) in nine weeks are read again
PAGE_SIZE = 100  # the API's maximum
FICHE_URL = "https://rappel.conso.gouv.fr/fiche-rappel/{id}/interne"
_LIST = re.compile(r"\s*[|¤]+\s*")  # RappelConso packs lists into one string with | or ¤ between values
_NOT_A_LOT = {"", "non concerné", "non communiqué", "néant", "aucun"}
# Text sections of a fiche, in the order the fiche page shows them, with its own French headings.
_SECTIONS = (("motif_rappel", "Motif du rappel"), ("risques_encourus", "Risques encourus"),
             ("description_complementaire_risque", "Description complémentaire du risque"),
             ("preconisations_sanitaires", "Préconisations sanitaires"),
             ("conduites_a_tenir_par_le_consommateur", "Conduites à tenir par le consommateur"),
             ("informations_complementaires", "Informations complémentaires"),
             ("informations_complementaires_publiques", "Informations complémentaires publiques"))
# The firm's phone line, pictures and printable documents: not notice content.
_PLUMBING = ("numero_contact", "liens_vers_les_images", "lien_vers_la_liste_des_produits",
             "lien_vers_la_liste_des_distributeurs", "lien_vers_affichette_pdf")


class FrDgccrfRappelconsoSpider(RadarSpider):
    name = "fr_dgccrf_rappelconso"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        yield self.page_request(week_start(LOOKBACK_DAYS).isoformat(), 0)

    def page_request(self, since: str, page: int) -> scrapy.Request:
        query = urlencode({"where": f"date_publication >= date'{since}'", "order_by": "date_publication desc",
                           "limit": PAGE_SIZE, "offset": page * PAGE_SIZE}, quote_via=quote)
        return scrapy.Request(f"{self.source.url}?{query}", callback=self.parse, errback=self.on_error,
                              cb_kwargs={"since": since, "page": page})

    def parse(self, response, since: str = "", page: int = 0):
        data = self.load_json(response)
        if data is None:
            return
        if isinstance(data, dict) and "error_code" in data:  # Opendatasoft's error object
            self.report_failure(FAILURE_ERROR_BODY, "%s: %s from %s", clean_text(data.get("error_code")),
                                clean_text(data.get("message")), response.url)
            return
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            self.report_failure(FAILURE_LAYOUT, "no results list in %s", response.url)
            return
        if not results:
            self.report_failure(FAILURE_EMPTY, "no fiches published since %s in %s", since, response.url)
            return
        for record in results:
            item = self.parse_fiche(record) if isinstance(record, dict) else None
            if item is not None:
                yield item
        unread = as_int(data.get("total_count")) - (page + 1) * PAGE_SIZE
        if unread > 0 and page + 1 < self.source.max_pages:
            yield self.page_request(since, page + 1)
        elif unread > 0:
            log.warning("%s: stopped at max_pages=%d, %d fiches unread", self.name, self.source.max_pages, unread)

    def parse_fiche(self, record: dict[str, Any]) -> NoticeItem | None:
        raw = record_bytes(record)
        fiche = clean_text(record.pop("numero_fiche", ""))
        libelle, marque = clean_text(record.pop("libelle", "")), clean_text(record.pop("marque_produit", ""))
        if not fiche or not libelle:
            log.warning("%s: record %s has no %s, skipped", self.name, fiche or "?", "title" if fiche else "numero_fiche")
            return None
        record_id = clean_text(record.pop("id", ""))
        sections = {key: [clean_text(v) for v in _LIST.split(str(record.pop(key, None) or ""))] for key, _ in _SECTIONS}
        text = [f"{heading} : {' ; '.join(v for v in sections[key] if v)}" for key, heading in _SECTIONS
                if any(sections[key])]
        ids = [part.split("$") for part in _LIST.split(str(record.pop("identification_produits", None) or ""))]
        zone, distributeurs = (clean_text(record.pop(k, "")) for k in ("zone_geographique_de_vente", "distributeurs"))
        labels = {
            "numero_version": clean_text(record.pop("numero_version", "")),
            "rappel_guid": clean_text(record.pop("rappel_guid", "")),
            "nature_juridique_rappel": clean_text(record.pop("nature_juridique_rappel", "")),
            "zone_geographique_de_vente": zone,
            "distributeurs": distributeurs,
            "conditionnements": clean_text(record.pop("conditionnements", "")),
            "temperature_conservation": clean_text(record.pop("temperature_conservation", "")),
            "marque_salubrite": clean_text(record.pop("marque_salubrite", "")),
            "modalites_de_compensation": split_labels(record.pop("modalites_de_compensation", None), "|"),
            "conduites_a_tenir": [v for v in sections["conduites_a_tenir_par_le_consommateur"] if v],
            **{label: str(parse_date(record.pop(key, None)) or "") for key, label in (
                ("date_debut_commercialisation", "debut_commercialisation"),
                ("date_date_fin_commercialisation", "fin_commercialisation"),  # sic: the dataset's own key
                ("date_de_fin_de_la_procedure_de_rappel", "fin_procedure_rappel"))},
        }
        text += [f"Distributeurs : {distributeurs}" if distributeurs else "",
                 f"Zone géographique de vente : {zone}" if zone else ""]
        item = self.make_item(
            None,
            source_id=fiche,
            url=clean_text(record.pop("lien_vers_la_fiche_rappel", "")) or FICHE_URL.format(id=record_id),
            title=libelle if marque.lower() in libelle.lower() else f"{libelle} – {marque}",
            text="\n\n".join(p for p in text if p),
            published=parse_date(record.pop("date_publication", None)),
            product_name=libelle,
            brand=marque or None,
            model=", ".join(split_labels(_LIST.split(str(record.pop("modeles_ou_references", None) or "")))) or None,
            gtin=find_gtin(record.pop("gtin", None), *(part[0] for part in ids)),
            batch=", ".join(unique(lot for part in ids if len(part) > 1
                                   and (lot := clean_text(part[1])).lower() not in _NOT_A_LOT)) or None,
            category_labels=unique(clean_text(record.pop(k, "")) for k in ("categorie_produit", "sous_categorie_produit")),
            risk_labels=[v for v in sections["risques_encourus"] if v],
            country_labels=[zone] if zone else [],
            labels={k: v for k, v in labels.items() if v},
            raw_body=raw,
            raw_content_type="application/json",
        )
        for key in _PLUMBING:
            record.pop(key, None)
        self.leftovers(record, "record")
        return item
